"""Impossible combinations in a converted recipe, all found in one pass before any build.

Each check is a small function returning the problems it sees (key paths included);
`validate_recipe` runs them all and raises one RecipeError listing every problem. Checks
that need the tokenizer run where it is loaded (`check_tokenizer_vocab`). Nothing here
touches the disk, so recipes with placeholder data paths validate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from modernbert.train.typed_yaml import RecipeError, parse_time

if TYPE_CHECKING:
    from modernbert.data.config import MLMLoaderConfig
    from modernbert.model import ModernBertConfig
    from modernbert.train.config import TrainConfig


def validate_recipe(cfg: TrainConfig, world_size: int = 1) -> None:
    """Raise RecipeError listing every impossible combination in `cfg` for `world_size` ranks."""
    if world_size < 1:
        raise RecipeError(f"world_size must be >= 1, got {world_size}")
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(cfg, world_size))
    if problems:
        raise RecipeError(problems)


def check_tokenizer_vocab(model: ModernBertConfig, tokenizer_vocab_size: int) -> None:
    """The model's embedding table must hold every token id the tokenizer can produce."""
    if model.vocab_size < tokenizer_vocab_size:
        raise RecipeError(
            f"model.vocab_size ({model.vocab_size}) is smaller than the tokenizer's vocabulary "
            f"({tokenizer_vocab_size} tokens); raise model.vocab_size to at least "
            f"{tokenizer_vocab_size} (a multiple of 64 is fastest)"
        )


def _batches(cfg: TrainConfig, world_size: int) -> list[str]:
    out = []
    sizes = {
        "global_train_batch_size": cfg.global_train_batch_size,
        "global_eval_batch_size": cfg.global_eval_batch_size,
    }
    for key, size in sizes.items():
        if size is None:
            continue
        if size < 1:
            out.append(f"{key}: must be >= 1, got {size}")
        elif size % world_size:
            out.append(f"{key}: {size} is not divisible by the world size {world_size}")
    device_batch = cfg.global_train_batch_size // world_size
    micro = cfg.device_train_microbatch_size
    if micro == "auto":
        # Composer's search starts from `dataloader.batch_size`, which the MLM loader leaves at
        # None: it yields whole batches itself (smaller ones during batch-size warmup).
        out.append(
            "device_train_microbatch_size: 'auto' is not supported with the MLM loader (it "
            "has no fixed batch_size to start the search from); give a number of rows"
        )
    if isinstance(micro, int) and device_batch >= 1:
        if micro < 1:
            out.append(f"device_train_microbatch_size: must be >= 1, got {micro}")
        elif device_batch % micro:
            out.append(
                f"device_train_microbatch_size: the device batch {device_batch} "
                f"(global_train_batch_size {cfg.global_train_batch_size} / world size "
                f"{world_size}) is not divisible by the microbatch size {micro}"
            )
    warmup = cfg.batch_size_warmup
    if warmup is not None and warmup.start_batch_size > cfg.global_train_batch_size:
        out.append(
            f"batch_size_warmup.start_batch_size: {warmup.start_batch_size} is larger than "
            f"global_train_batch_size {cfg.global_train_batch_size}"
        )
    return out


def _loaders(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    out = [
        f"{key}.mlm_probability: {loader.mlm_probability} is outside (0, 1)"
        for key, loader in _loader_items(cfg)
        if not 0.0 < loader.mlm_probability < 1.0
    ]
    # With init_from.hf the model is known only once its config.json is read: init_hf.py
    # runs `loader_model_problems` then (the recipe's model section is a placeholder).
    if cfg.init_from is None or not cfg.init_from.hf:
        out.extend(loader_model_problems(cfg))
    return out


def _loader_items(cfg: TrainConfig) -> list[tuple[str, MLMLoaderConfig]]:
    loaders = {"train_loader": cfg.train_loader, "eval_loader": cfg.eval_loader}
    return [(key, loader) for key, loader in loaders.items() if loader is not None]


def loader_model_problems(cfg: TrainConfig) -> list[str]:
    """Sequence lengths the model cannot take."""
    model: ModernBertConfig = cfg.model
    out = []
    for key, loader in _loader_items(cfg):
        if loader.max_seq_len > model.max_position_embeddings:
            out.append(
                f"{key}.max_seq_len: {loader.max_seq_len} is above "
                f"model.max_position_embeddings {model.max_position_embeddings}"
            )
        if model.local_attention > loader.max_seq_len:
            out.append(
                f"model.local_attention: window {model.local_attention} is larger than "
                f"{key}.max_seq_len {loader.max_seq_len} (every layer would be global)"
            )
    return out


def _durations(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    max_duration = parse_time(cfg.max_duration)
    out = []
    if max_duration.value <= 0:
        out.append(f"max_duration: must be > 0, got '{cfg.max_duration}'")
    problems = getattr(cfg.scheduler, "problems", None)
    if callable(problems):
        out.extend(problems(max_duration, "scheduler"))
    for key in ("eval_interval", "save_interval"):
        if parse_time(getattr(cfg, key)).value <= 0:
            out.append(f"{key}: must be > 0, got '{getattr(cfg, key)}'")
    if cfg.eval_subset_num_batches == 0 or cfg.eval_subset_num_batches < -1:
        out.append(
            f"eval_subset_num_batches: must be > 0 or -1 (all), got {cfg.eval_subset_num_batches}"
        )
    return out


def _parallelism(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    par = cfg.parallelism
    return [
        f"parallelism.{section}: options given with parallelism.strategy '{par.strategy}'"
        for section in ("fsdp", "fsdp2")
        if getattr(par, section) is not None and par.strategy != section
    ]


def _compile(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    if cfg.compile_options is not None and not cfg.compile:
        return ["compile_options: given with compile false (set compile: true to use them)"]
    return []


def _checkpoints(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    out = []
    if cfg.autoresume and not cfg.save_folder:
        out.append("autoresume: needs save_folder (where to look for the latest checkpoint)")
    if cfg.load_path is not None and cfg.init_from is not None:
        out.append(
            "load_path and init_from are both set: load_path resumes a run as-is, init_from "
            "starts a new phase from weights; pick one"
        )
    init = cfg.init_from
    out.extend(_init_from_problems(cfg))
    if init is not None and init.mode == "tile" and not init.reset_optimizer:
        out.append(
            "init_from.reset_optimizer: must be true with mode 'tile' (the optimizer state "
            "of the smaller model does not fit the larger one)"
        )
    if cfg.save_num_checkpoints_to_keep < -1:
        out.append(
            "save_num_checkpoints_to_keep: must be >= 0 or -1 (all), "
            f"got {cfg.save_num_checkpoints_to_keep}"
        )
    if cfg.nonfinite_check_interval < 1:
        out.append(f"nonfinite_check_interval: must be >= 1, got {cfg.nonfinite_check_interval}")
    if cfg.loss_log_interval < 1:
        out.append(f"loss_log_interval: must be >= 1 step, got {cfg.loss_log_interval}")
    if cfg.max_grad_norm is not None and cfg.max_grad_norm <= 0:
        out.append(f"max_grad_norm: must be > 0 or null (no clipping), got {cfg.max_grad_norm}")
    return out


def _init_from_problems(cfg: TrainConfig) -> list[str]:
    init = cfg.init_from
    out = (
        []
        if cfg.tokenizer or (init and init.hf)
        else ["tokenizer: missing (required unless init_from.hf)"]
    )
    if init is not None and not init.hf and not init.path:
        out.append("init_from: set path (our checkpoint) or hf (a Hugging Face model)")
    if init is None or not init.hf:
        return out
    if init.path is not None:
        out.append("init_from: set path (our checkpoint) or hf (a Hugging Face model), not both")
    if init.mode != "weights":
        out.append(f"init_from.mode: {init.mode!r} is not available with hf (weights only)")
    if not init.reset_optimizer:
        out.append("init_from.reset_optimizer: must be true with hf (it has no optimizer state)")
    return out


def _components(cfg: TrainConfig, world_size: int) -> list[str]:
    del world_size
    out = []
    if "jsonl" in cfg.loggers and not cfg.metrics_file:
        out.append("loggers.jsonl: needs metrics_file (the path it writes)")
    return out


CHECKS: list[Callable[[TrainConfig, int], list[str]]] = [
    _batches,
    _loaders,
    _durations,
    _parallelism,
    _compile,
    _checkpoints,
    _components,
]
