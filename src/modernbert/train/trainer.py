"""Recipe -> Composer Trainer: build every part from a validated TrainConfig, then fit.

The order matters in two places. Model weights are created (seeded) and ``init_from`` is
applied before the Trainer exists, so Composer's own ``load_path`` / autoresume, which run
inside the Trainer, overwrite them when a run resumes. And the run record (model config and
recipe) is a callback, so every checkpoint carries what is needed to rebuild its model.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.core import Callback, DataSpec, Evaluator
from composer.utils import reproducibility

from modernbert.data.loader import build_mlm_dataloader, num_samples_in_batch, num_tokens_in_batch
from modernbert.data.tokenizer import TokenSpec, load_tokenizer
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.callbacks import build_callbacks
from modernbert.train.checkpoint import find_checkpoint, init_model_from
from modernbert.train.composer_model import METRICS, ComposerMLM
from modernbert.train.config import CompileOptions, TrainConfig, load_recipe, recipe_to_dict
from modernbert.train.export import RunRecord
from modernbert.train.loggers import build_loggers
from modernbert.train.optim import build_optimizer
from modernbert.train.phase_hparams import KeepRecipeHyperparameters
from modernbert.train.schedule_clock import StepSchedulersOnTime
from modernbert.train.schedulers import build_scheduler
from modernbert.train.shard_grads import ShardGradientAverage
from modernbert.train.validate import check_tokenizer_vocab

EVAL_LABEL = "eval"
# Batch-size warmup and the last eval batch are smaller than the microbatch on purpose;
# Composer warns about it on every such batch.
warnings.filterwarnings("ignore", message="Cannot split tensor of length", category=UserWarning)
# The `console` logger is a ConsoleLogger built with the recipe's interval; Composer warns that
# its own console arguments (which the recipe does not use) would then be ignored.
warnings.filterwarnings("ignore", message="Specifying the ConsoleLogger via `loggers`")
# Composer's latest-checkpoint link in save_folder: its presence means autoresume resumes.
LATEST_CHECKPOINT = "latest-rank0.pt"
_SPECIAL_IDS = {
    "pad_token_id": "pad_id",
    "cls_token_id": "cls_id",
    "sep_token_id": "sep_id",
    "mask_token_id": "mask_id",
}


def check_special_ids(model: ModernBertConfig, tokens: TokenSpec) -> None:
    """The model's special-token ids must be the tokenizer's (export and masking rely on it)."""
    check_tokenizer_vocab(model, tokens.vocab_size)
    wrong = [
        f"model.{field}={getattr(model, field)} but the tokenizer's is {getattr(tokens, attr)}"
        for field, attr in _SPECIAL_IDS.items()
        if getattr(model, field) != getattr(tokens, attr)
    ]
    if wrong:
        raise ValueError("special token ids disagree with the tokenizer: " + "; ".join(wrong))


def resumes(cfg: TrainConfig) -> bool:
    """Whether Composer will restore a checkpoint (load_path, or autoresume with one saved)."""
    if cfg.load_path is not None:
        return True
    if not (cfg.autoresume and cfg.save_folder):
        return False
    return (Path(cfg.save_folder) / LATEST_CHECKPOINT).exists()


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


def build_model(cfg: TrainConfig, tokens: TokenSpec) -> ComposerMLM:
    """Seeded fresh model, then ``init_from`` unless Composer is about to resume a checkpoint
    or (``reset_optimizer: false``) will load weights and optimizer state itself."""
    check_special_ids(cfg.model, tokens)
    reproducibility.seed_all(cfg.seed)  # identical init on every rank
    model = ModernBertForMaskedLM(cfg.model)
    init = cfg.init_from
    if init is not None:
        if resumes(cfg):
            print(f"init_from: skipped, resuming the checkpoint in {cfg.save_folder}", flush=True)
        elif init.reset_optimizer:
            init_model_from(model, init.path, init.mode)
    return ComposerMLM(model)


def phase_load_args(cfg: TrainConfig) -> dict[str, Any]:
    """Trainer load arguments: ``load_path`` as given, or the previous phase's checkpoint with
    its optimizer state (weights mode, ``reset_optimizer: false``) but fresh time and data."""
    init = cfg.init_from
    if init is None or init.reset_optimizer or resumes(cfg):
        return {"load_path": cfg.load_path}
    path = find_checkpoint(init.path)  # a sharded folder needs a sharded FSDP run
    print(f"init_from (weights + optimizer): reading {path}", flush=True)
    return {"load_path": str(path), "load_ignore_keys": PHASE_RESET_KEYS}


def build_dataloaders(cfg: TrainConfig, tokens: TokenSpec) -> tuple[DataSpec, Evaluator | None]:
    """Train DataSpec (Composer counts rows as samples, real tokens as tokens) and evaluator."""
    train = build_mlm_dataloader(
        cfg.train_loader,
        tokens,
        cfg.global_train_batch_size,
        seed=cfg.seed,
        batch_size_warmup=cfg.batch_size_warmup,
    )
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
    return int(os.environ.get("WORLD_SIZE", "1"))


def _data_spec(loader: Any) -> DataSpec:
    return DataSpec(
        loader,
        get_num_samples_in_batch=num_samples_in_batch,
        get_num_tokens_in_batch=num_tokens_in_batch,
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


def internal_callbacks(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> list[Callback]:
    """Callbacks the run needs whatever the recipe says; they run before the recipe's own
    (the FSDP2 gradient fix must come before clipping and the gradient-norm metric; the LR for
    the next batch must be set before the LR monitor reads it). A phase that loads the
    previous optimizer state gets this recipe's LR and decay settings back."""
    out: list[Callback] = [StepSchedulersOnTime()]
    if cfg.parallelism.strategy == "fsdp2":
        out.append(ShardGradientAverage())
    if cfg.init_from is not None and not cfg.init_from.reset_optimizer:
        out.append(KeepRecipeHyperparameters(optimizer))
    return out


def compile_config_for(cfg: TrainConfig) -> dict[str, Any] | None:
    """Composer's ``compile_config`` (``torch.compile`` kwargs), None when not compiling."""
    if not cfg.compile:
        return None
    return (cfg.compile_options or CompileOptions()).to_torch()


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Every part of the run, built from the recipe, wired into one Composer Trainer."""
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = TokenSpec.from_tokenizer(tokenizer)
    model = build_model(cfg, tokens)
    train_spec, evaluator = build_dataloaders(cfg, tokens)
    record = RunRecord(model.model.config, cfg.tokenizer, cfg.save_folder, recipe_to_dict(cfg))
    loggers = build_loggers(cfg)
    optimizer = build_optimizer(cfg.optimizer, model)
    return Trainer(
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
        parallelism_config=cfg.parallelism.composer_config(),
        compile_config=compile_config_for(cfg),
        save_folder=cfg.save_folder,
        save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
        autoresume=cfg.autoresume,
        # A crash can leave checkpoints newer than the one autoresume picks (written before
        # the latest link moved); they belong to this same run, so replace them.
        save_overwrite=cfg.autoresume,
        **phase_load_args(cfg),
    )


def run(recipe: str | Path, overrides: list[str] | None = None) -> Trainer:
    """Load + validate the recipe, build the trainer, fit, close: what main.py does."""
    cfg = load_recipe(recipe, overrides or [], world_size=_world_size())
    trainer = build_trainer(cfg)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer
