"""Recipe -> Composer Trainer: build every part from a validated TrainConfig, then fit.

The order matters in two places. Model weights are created (seeded) and ``init_from`` is
applied before the Trainer exists, so Composer's own ``load_path`` / autoresume, which run
inside the Trainer, overwrite them when a run resumes. And the run record (model config and
recipe) is a callback, so every checkpoint carries what is needed to rebuild its model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.core import Callback, DataSpec, Evaluator
from composer.trainer.trainer import TrainerMode
from composer.utils import dist, reproducibility

from modernbert.data.flat import split_flat_batch
from modernbert.data.loader import (
    build_mlm_dataloader,
    composer_token_counts,
    num_samples_in_batch,
    world_from_environment,
)
from modernbert.data.tokenizer import TokenSpec, load_tokenizer
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.special_tokens import MLM_ROLES
from modernbert.train.callbacks import build_callbacks
from modernbert.train.checkpoint import find_checkpoint, init_model_from
from modernbert.train.checkpoint_export import RunRecord
from modernbert.train.composer_model import METRICS, ComposerMLM
from modernbert.train.config import (
    CompileOptions,
    RecipeError,
    TrainConfig,
    load_recipe,
    recipe_to_dict,
)
from modernbert.train.data_check import check_run_data
from modernbert.train.guards import check_enough_rows, install_save_guards, lock_save_folder
from modernbert.train.host_loop import iterate_batches, loss_logged_after, train_microbatches
from modernbert.train.init_hf import load_hf_weights, resolve_hf_init, tokenizer_for
from modernbert.train.loggers import build_loggers
from modernbert.train.optim import build_optimizer
from modernbert.train.phase_hparams import KeepRecipeHyperparameters
from modernbert.train.safe_load import (
    VerifiedCheckpoint,
    check_model_fits,
    check_not_complete,
    check_state_not_complete,
    refuse_stale_save_folder,
    resume_checkpoint,
    verify_checkpoint,
)
from modernbert.train.schedule_clock import StepSchedulersOnTime
from modernbert.train.schedulers import build_scheduler
from modernbert.train.shard_grads import ShardGradientAverage
from modernbert.train.validate import check_tokenizer_vocab

EVAL_LABEL = "eval"
# The `console` logger is a ConsoleLogger built with the recipe's interval; Composer warns that
# its own console arguments (which the recipe does not use) would then be ignored.
warnings.filterwarnings("ignore", message="Specifying the ConsoleLogger via `loggers`")
_SPECIAL_IDS = {r.config_field: r.spec_field for r in MLM_ROLES}  # model field -> TokenSpec


def check_special_ids(model: ModernBertConfig, tokens: TokenSpec) -> None:
    """The model's special-token ids must be the tokenizer's (export and masking rely on it)."""
    check_tokenizer_vocab(model, tokens.vocab_size)
    wrong = [
        f"model.{field}={getattr(model, field)} but the tokenizer's is {getattr(tokens, attr)}"
        for field, attr in _SPECIAL_IDS.items()
        if getattr(model, field) != getattr(tokens, attr)
    ]
    if wrong:
        raise RecipeError("special token ids disagree with the tokenizer: " + "; ".join(wrong))


# What Composer must not restore when a new phase keeps the previous optimizer state
# (init_from with reset_optimizer: false): the phase starts its own time, schedule and data.
PHASE_RESET_KEYS = [
    "state/timestamp",
    "state/schedulers",
    "state/dataset_state",
    "state/callbacks",
    "state/run_name",
    "rng",
]


def build_model(cfg: TrainConfig, tokens: TokenSpec, resuming: bool = False) -> ComposerMLM:
    """Seeded fresh model, then ``init_from`` unless Composer is about to resume a checkpoint
    (``resuming``) or (``reset_optimizer: false``) will load weights and optimizer state itself."""
    check_special_ids(cfg.model, tokens)
    reproducibility.seed_all(cfg.seed)  # identical init on every rank
    model = ModernBertForMaskedLM(cfg.model)
    init = cfg.init_from
    if init is not None:
        if resuming:
            print(f"init_from: skipped, resuming the checkpoint in {cfg.save_folder}", flush=True)
        elif init.hf:
            load_hf_weights(model, init.hf)
        elif init.reset_optimizer:
            init_model_from(model, init.path, init.mode)
    return ComposerMLM(model)


def phase_load_args(cfg: TrainConfig, resume: VerifiedCheckpoint | None) -> dict[str, Any]:
    """Trainer load arguments: the verified checkpoint this run resumes, or the previous
    phase's checkpoint with its optimizer state (weights mode, ``reset_optimizer: false``) but
    fresh time and data, verified too; Composer never reads an unchecked checkpoint."""
    if resume is not None:
        if resume.sharded:  # this run's own sharded folder: Composer's autoresume finds it
            return {"autoresume": True, "load_path": None}
        return {"autoresume": False, "load_path": str(resume.path)}
    init = cfg.init_from
    if init is None or init.reset_optimizer:
        return {"autoresume": False, "load_path": None}
    path = verify_checkpoint(find_checkpoint(init.path)).path
    print(f"init_from (weights + optimizer): reading {path}", flush=True)
    return {"autoresume": False, "load_path": str(path), "load_ignore_keys": PHASE_RESET_KEYS}


def build_dataloaders(cfg: TrainConfig, tokens: TokenSpec) -> tuple[DataSpec, Evaluator | None]:
    """Train DataSpec (Composer counts rows as samples, real tokens as tokens) and evaluator."""
    train = build_mlm_dataloader(
        cfg.train_loader,
        tokens,
        cfg.global_train_batch_size,
        seed=cfg.seed,
        batch_size_warmup=cfg.batch_size_warmup,
    )
    check_enough_rows(train, cfg.global_train_batch_size)
    train_spec = _data_spec(train)
    if cfg.eval_loader is None:
        return train_spec, None
    evaluation = build_mlm_dataloader(
        cfg.eval_loader, tokens, cfg.eval_batch_size, seed=cfg.seed, evaluation=True
    )
    evaluator = Evaluator(
        label=EVAL_LABEL,
        dataloader=_data_spec(evaluation),
        metric_names=list(METRICS),
        subset_num_batches=cfg.eval_subset_num_batches,
        # the loader has no fixed batch_size for Composer to read: no grad, one forward per batch
        device_eval_microbatch_size=cfg.eval_batch_size // _world_size(),
    )
    return train_spec, evaluator


def _world_size() -> int:
    """Ranks of this run, as the launcher (``composer -n N``) announces them."""
    return world_from_environment()[0]


def _data_spec(loader: Any) -> DataSpec:
    """Rows are samples, real tokens the token clock, masked tokens weight the microbatch
    losses; all three and the microbatch split come from the batch's host-side layout."""
    return DataSpec(
        loader,
        get_num_samples_in_batch=num_samples_in_batch,
        get_num_tokens_in_batch=composer_token_counts,
        split_batch=split_flat_batch,
    )


def precision_for(cfg: TrainConfig) -> str:
    """The recipe's precision on GPU; fp32 on CPU, where Composer offers no autocast."""
    if cfg.precision != "fp32" and not torch.cuda.is_available():
        print(f"precision: {cfg.precision} needs a GPU; using fp32 on the CPU", flush=True)
        return "fp32"
    return cfg.precision


def microbatch_size_for(cfg: TrainConfig) -> int:
    """Rows per forward/backward on one rank; null in the recipe means the whole device batch."""
    micro = cfg.device_train_microbatch_size
    if micro is None:
        return cfg.global_train_batch_size // _world_size()
    return int(micro)


def sharded(cfg: TrainConfig) -> bool:
    """Whether the model is wrapped in FSDP/FSDP2: only with more than one rank. On one rank
    sharding saves nothing and costs a gather/free per layer and a flat-parameter copy."""
    return cfg.parallelism.strategy in ("fsdp", "fsdp2") and _world_size() > 1


def parallelism_config_for(cfg: TrainConfig) -> dict[str, Any] | None:
    """Composer's ``parallelism_config``: the recipe's FSDP settings when sharded, else None
    (DDP from two ranks, which Composer applies by itself; no wrapper on one rank)."""
    if cfg.parallelism.strategy != "ddp" and not sharded(cfg):
        print(
            f"parallelism: one rank, so no {cfg.parallelism.strategy} wrapper (the model runs "
            "unwrapped; the strategy applies from two ranks on)",
            flush=True,
        )
    return cfg.parallelism.composer_config() if sharded(cfg) else None


def internal_callbacks(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> list[Callback]:
    """Callbacks the run needs whatever the recipe says; they run before the recipe's own
    (the FSDP2 gradient fix must come before clipping and the gradient-norm metric; the LR for
    the next batch must be set before the LR monitor reads it). A phase that loads the
    previous optimizer state gets this recipe's LR and decay settings back."""
    out: list[Callback] = [StepSchedulersOnTime()]
    if sharded(cfg) and cfg.parallelism.strategy == "fsdp2":
        out.append(ShardGradientAverage())
    if cfg.init_from is not None and not cfg.init_from.reset_optimizer:
        out.append(KeepRecipeHyperparameters(optimizer))
    return out


def compile_config_for(cfg: TrainConfig) -> dict[str, Any] | None:
    """``torch.compile`` kwargs for the model's regions, None when not compiling."""
    if not cfg.compile:
        return None
    return (cfg.compile_options or CompileOptions()).to_torch()


def compile_model(model: ComposerMLM, cfg: TrainConfig) -> None:
    """``compile: true``: compile the model's regions (each encoder layer around its attention
    call, the head + loss) with a dynamic token dimension, instead of Composer compiling the
    whole model, which would break its graph at every attention plan and recompile whenever
    the batch's document layout changes."""
    options = compile_config_for(cfg)
    if options is not None:
        model.model.compile_regions(**options)
        print(f"compile: model regions compiled with {options}", flush=True)


class MLMTrainer(Trainer):
    """Composer's Trainer without its per-step device reads (each one stalls the host until
    the device drains, so the next step cannot be queued behind the running one).

    - The optimizer step takes no closure: Composer's closure returns the loss with
      ``.item()``, a sync between the backward and the optimizer step, and our optimizers
      (Adam-style) never re-evaluate the loss.
    - On one rank the sample and token counts stay host integers (the batch's layout): the
      all-reduce that Composer moves them to the device for has nothing to reduce there.
      For the same reason the end-of-data flag and the microbatch weights' total come from
      the host there (``host_loop``); with several ranks Composer's all-reduced reads stay.
    - The step's loss is all-reduced, read and logged (``loss/train/total``,
      ``state.total_loss_dict``) every ``loss_log_interval`` steps, not every step.
    """

    def __init__(self, *args: Any, loss_log_interval: int, **kwargs: Any) -> None:
        if loss_log_interval < 1:
            raise ValueError(f"loss_log_interval must be >= 1 step, got {loss_log_interval}")
        self.loss_log_interval = loss_log_interval
        super().__init__(*args, **kwargs)

    def _use_closures(self) -> bool:
        return False

    def _accumulate_time_across_ranks(
        self, num_samples: int | float, num_tokens: int, batch_time: Any
    ) -> tuple[int, int, Any]:
        if dist.get_world_size() == 1:
            return int(num_samples), int(num_tokens), batch_time
        return super()._accumulate_time_across_ranks(num_samples, num_tokens, batch_time)

    def _iter_dataloader(self, trainer_mode: TrainerMode) -> Iterator[Any]:
        if dist.get_world_size() == 1:
            return iterate_batches(self, trainer_mode)
        return super()._iter_dataloader(trainer_mode)

    def _train_microbatches(
        self, microbatches: Any, total_loss_dict: dict[str, torch.Tensor], ddp_sync: bool = True
    ) -> torch.Tensor:
        if dist.get_world_size() == 1:  # no DDP wrapper, so ``ddp_sync`` has nothing to do
            return train_microbatches(self, microbatches, total_loss_dict)
        return super()._train_microbatches(microbatches, total_loss_dict, ddp_sync)

    def _train_batch(self, use_grad_scaling: bool) -> dict[str, torch.Tensor] | None:
        losses = super()._train_batch(use_grad_scaling)
        steps_done = int(self.state.timestamp.batch) + 1  # the timestamp moves after the step
        if loss_logged_after(steps_done, self.loss_log_interval):
            return losses  # Composer all-reduces, reads and logs it, labelled with this step
        return None  # Composer's loop skips the loss of a step that returns None


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Every part of the run, built from the recipe, wired into one Composer Trainer."""
    resume = resume_checkpoint(cfg.load_path, cfg.autoresume, cfg.save_folder)
    if resume is not None:
        check_not_complete(resume, cfg.max_duration, cfg.run_name)
    refuse_stale_save_folder(cfg.save_folder, resuming=resume is not None)
    tokenizer = load_tokenizer(tokenizer_for(cfg))
    cfg = resolve_hf_init(cfg, tokenizer)  # init_from.hf: the checkpoint's model and tokenizer
    tokens = TokenSpec.from_tokenizer(tokenizer)
    check_special_ids(cfg.model, tokens)
    check_run_data(cfg, tokenizer)  # before anything is built or written
    model = build_model(cfg, tokens, resuming=resume is not None)
    if resume is not None:
        check_model_fits(resume, model)
        resume.release()  # Composer reads it again; do not hold two copies
    compile_model(model, cfg)
    train_spec, evaluator = build_dataloaders(cfg, tokens)
    record = RunRecord(model.model.config, cfg.tokenizer, cfg.save_folder, recipe_to_dict(cfg))
    loggers = build_loggers(cfg)
    optimizer = build_optimizer(cfg.optimizer, model)
    trainer = MLMTrainer(
        run_name=cfg.run_name,
        seed=cfg.seed,
        model=model,
        train_dataloader=train_spec,
        eval_dataloader=evaluator,
        eval_interval=cfg.eval_interval if evaluator is not None else 1,
        max_duration=cfg.max_duration,
        optimizers=optimizer,
        schedulers=build_scheduler(cfg.scheduler),
        step_schedulers_every_batch=True,
        callbacks=[record, *internal_callbacks(cfg, optimizer), *build_callbacks(cfg)],
        loggers=loggers,
        progress_bar=not any(name == "console" for name in cfg.loggers),
        precision=precision_for(cfg),
        device_train_microbatch_size=microbatch_size_for(cfg),
        # microbatch losses weighted by their masked tokens: the step's loss and gradient are
        # the whole batch's mean over its masked tokens, whatever the microbatch size
        accumulate_train_batch_on_tokens=True,
        parallelism_config=parallelism_config_for(cfg),
        save_folder=cfg.save_folder,
        save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
        # A crash can leave checkpoints newer than the one autoresume picks (written before
        # the latest link moved); they belong to this same run, so replace them.
        save_overwrite=cfg.autoresume,
        loss_log_interval=cfg.loss_log_interval,
        **phase_load_args(cfg, resume),
    )
    install_save_guards(trainer, cfg.nonfinite_check_interval, cfg.save_num_checkpoints_to_keep)
    return trainer


def run(recipe: str | Path, overrides: list[str] | None = None) -> Trainer:
    """Load + validate the recipe, build the trainer, fit, close: what main.py does."""
    cfg = load_recipe(recipe, overrides or [], world_size=_world_size())
    lock = lock_save_folder(cfg.save_folder)  # before anything reads or writes the folder
    try:
        trainer = build_trainer(cfg)
        try:
            check_state_not_complete(trainer.state, cfg.run_name)
            trainer.fit()
        finally:
            trainer.close()
    finally:
        if lock is not None:
            lock.release()
    return trainer
