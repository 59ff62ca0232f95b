"""The typed training recipe: YAML + `key=value` overrides -> `TrainConfig`, checked at the door.

`load_recipe(path, overrides)` reads the YAML with OmegaConf (its `inherit:` parts merged
underneath, `model.size` looked up in the table of sizes: `modernbert.train.compose`), merges
the dotlist overrides, resolves `${run_name}`-style interpolations (OmegaConf's; the old
`{run_name}` form is refused with a hint), converts the data into the dataclasses below with
the generic converter (`modernbert.train.typed_yaml`) and runs `validate_recipe`. Every problem
(unknown key with a did-you-mean, wrong type, missing value, impossible combination) is
reported by its full key path in one `RecipeError` before any model or data is built.

The dataclasses are the single home of every default; the model's and the data layer's own
dataclasses (`ModernBertConfig`, `MLMLoaderConfig`, `BatchSizeWarmup`) are embedded as-is.
Components (optimizer, scheduler, callbacks, loggers) are named sections whose options are
typed by their registry entry.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from modernbert.data.config import BatchSizeWarmup, MLMLoaderConfig
from modernbert.data.loader import world_from_environment
from modernbert.model import ModernBertConfig
from modernbert.train.callbacks import CALLBACKS
from modernbert.train.compose import load_composed, resolve_size
from modernbert.train.init_hf import hf_recipe_problems
from modernbert.train.loggers import LOGGERS
from modernbert.train.optim import OPTIMIZERS, OptimizerConfig
from modernbert.train.schedulers import SCHEDULERS
from modernbert.train.typed_yaml import Interval, Keyed, Named, RecipeError, convert
from modernbert.train.validate import validate_recipe

__all__ = [
    "CompileOptions",
    "FSDP2Config",
    "FSDPConfig",
    "InitFromConfig",
    "ParallelismConfig",
    "RecipeError",
    "TrainConfig",
    "load_recipe",
    "recipe_to_dict",
    "validate_recipe",
]


@dataclass
class FSDPConfig:
    """FSDP options, passed to Composer's `parallelism_config={'fsdp': ...}` (FSDP1)."""

    sharding_strategy: Literal[
        "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2"
    ] = "FULL_SHARD"  # what each rank keeps: full sharding = least memory
    mixed_precision: Literal["DEFAULT", "PURE", "FULL"] = "DEFAULT"  # Composer's FSDP presets
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    activation_cpu_offload: bool = False  # keep checkpointed activations on the CPU
    cpu_offload: bool = False  # keep sharded parameters on the CPU
    state_dict_type: Literal["full", "sharded"] = "full"  # checkpoint layout
    backward_prefetch: Literal["BACKWARD_PRE", "BACKWARD_POST", "NONE"] = "BACKWARD_PRE"
    forward_prefetch: bool = False  # prefetch the next all-gather during forward
    limit_all_gathers: bool = True  # bound in-flight all-gathers (memory)
    use_orig_params: bool = True  # needed by torch.compile and per-parameter groups
    sync_module_states: bool = False  # broadcast rank 0's weights at wrap time
    verbose: bool = False  # print the wrapped module tree

    def to_composer(self) -> dict[str, Any]:
        """The dict Composer's `parallelism_config['fsdp']` accepts."""
        return dataclasses.asdict(self)


@dataclass
class FSDP2Config:
    """FSDP2 (`fully_shard`, DTensor parameters) options, Composer's `FSDP2Config`. Unlike
    FSDP1 it also runs on the CPU (gloo)."""

    reshard_after_forward: bool = True  # free gathered weights after forward (ZeRO-3 vs -2)
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    activation_cpu_offload: bool = False  # keep checkpointed activations on the CPU
    state_dict_type: Literal["full", "sharded"] = "sharded"  # checkpoint layout
    mixed_precision: Literal["DEFAULT", "PURE", "FULL"] = "DEFAULT"  # Composer's presets
    verbose: bool = False  # print the sharded module tree

    def to_composer(self) -> Any:
        from composer.utils.parallelism import FSDP2Config as ComposerFSDP2Config

        return ComposerFSDP2Config(**dataclasses.asdict(self))


@dataclass
class ParallelismConfig:
    """Data parallelism: `ddp` (replicated weights), `fsdp` (FSDP1, sharded weights, CUDA) or
    `fsdp2` (FSDP2, sharded DTensor weights, CUDA or CPU)."""

    strategy: Literal["ddp", "fsdp", "fsdp2"] = "ddp"  # how ranks share the model
    fsdp: FSDPConfig | None = None  # FSDP1 options; only with strategy fsdp (null = defaults)
    fsdp2: FSDP2Config | None = None  # FSDP2 options; only with strategy fsdp2 (null = defaults)

    def composer_config(self) -> dict[str, Any] | None:
        """Composer 0.32's `parallelism_config`, or None for DDP (which Composer applies by
        itself whenever the world size is above 1)."""
        if self.strategy == "fsdp":
            return {"fsdp": (self.fsdp or FSDPConfig()).to_composer()}
        if self.strategy == "fsdp2":
            return {"fsdp": (self.fsdp2 or FSDP2Config()).to_composer()}
        return None


@dataclass
class InitFromConfig:
    """Start a new phase from an earlier checkpoint's weights (fresh time, data and schedule):
    our Composer checkpoint (`path`) or a Hugging Face ModernBERT (`hf`, see init_hf.py)."""

    path: str | None = None  # Composer checkpoint file or folder (its latest checkpoint)
    # Hugging Face ModernBERT folder or hub name: its config.json sets the model, its
    # tokenizer is the run's unless `tokenizer` is set (modernbert.train.init_hf)
    hf: str | None = None
    # weights: copy the weights as they are; tile: centre-tile smaller weights into this model
    mode: Literal["weights", "tile"] = "weights"
    reset_optimizer: bool = True  # start the optimizer fresh (must be true for tile)


@dataclass
class CompileOptions:
    """`torch.compile` keyword arguments for `compile: true` (torch's own defaults here)."""

    backend: str = "inductor"  # inductor (generated kernels); aot_eager traces only
    mode: Literal["default", "reduce-overhead", "max-autotune"] | None = None
    dynamic: bool | None = None  # null: compile static, go dynamic when shapes change
    fullgraph: bool = False  # fail on a graph break instead of falling back to eager

    def to_torch(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class TrainConfig:
    """One training run (one phase), mapping 1:1 onto the YAML recipe."""

    run_name: str  # names the run, its folders (${run_name}) and its W&B run
    train_loader: MLMLoaderConfig  # training data: streams, sequence length, masking
    scheduler: Annotated[object, Named(SCHEDULERS)]  # LR schedule: {name: ..., options}
    max_duration: Interval  # run length, e.g. 1_700_000_000_000tok or 10000ba
    global_train_batch_size: int  # rows per optimizer step over all ranks
    seed: int = 17  # seeds model init, data order and masking
    # tokenizer folder or hub name (modernbert.data.tokenizer.load_tokenizer); null only
    # with init_from.hf, whose own tokenizer is then used
    tokenizer: str | None = None
    model: ModernBertConfig = field(default_factory=ModernBertConfig)  # architecture
    eval_loader: MLMLoaderConfig | None = None  # evaluation data (null: no evaluation)
    # rows per forward/backward on one rank; null: the whole device batch at once ("auto",
    # Composer's OOM search, is refused with a reason: see validate._batches)
    device_train_microbatch_size: int | Literal["auto"] | None = None
    global_eval_batch_size: int | None = None  # null: same as global_train_batch_size
    batch_size_warmup: BatchSizeWarmup | None = None  # ramp the batch size up (null: off)
    optimizer: Annotated[OptimizerConfig, Named(OPTIMIZERS)] = field(
        default_factory=OptimizerConfig
    )
    eval_interval: Interval = "1000ba"  # how often to evaluate
    eval_subset_num_batches: int = -1  # eval batches per evaluation (-1: the whole eval set)
    precision: Literal["fp32", "amp_bf16"] = "amp_bf16"  # autocast bf16 on GPU; fp32 on CPU
    max_grad_norm: float | None = None  # clip the global gradient norm (null: no clipping)
    # batches between reads of the device-side "loss went non-finite" flag (one sync each);
    # it is also read before every checkpoint, so a NaN run never saves
    nonfinite_check_interval: int = 50
    # steps between logged training losses (`loss/train/total`, the loss of that step, read
    # from the device once); 1 logs every step, a GPU run sets more so its steps queue freely
    loss_log_interval: int = 1
    compile: bool = False  # torch.compile the model
    compile_options: CompileOptions | None = None  # torch.compile arguments (null: defaults)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    # name -> options; null switches an entry off (e.g. override callbacks.memory_monitor=null)
    callbacks: Annotated[dict[str, object], Keyed(CALLBACKS)] = field(default_factory=dict)
    loggers: Annotated[dict[str, object], Keyed(LOGGERS)] = field(default_factory=dict)
    save_folder: str | None = "runs/${run_name}/checkpoints"  # null: no checkpoints
    save_interval: Interval = "1000ba"  # how often to checkpoint
    save_num_checkpoints_to_keep: int = 3  # local checkpoints kept (-1: all)
    autoresume: bool = False  # resume from the latest checkpoint in save_folder if any
    load_path: str | None = None  # resume a checkpoint as-is (time, optimizer, data position)
    init_from: InitFromConfig | None = None  # start a new phase from earlier weights
    # one JSON line per step (the jsonl logger, switched on by a non-null metrics_file)
    metrics_file: str | None = "runs/${run_name}/metrics.jsonl"

    @property
    def eval_batch_size(self) -> int:
        """The global eval batch size in effect."""
        if self.global_eval_batch_size is not None:
            return self.global_eval_batch_size
        return self.global_train_batch_size


def load_recipe(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    world_size: int | None = None,
) -> TrainConfig:
    """Read, override, convert and validate a recipe; raise RecipeError listing all problems.

    `world_size` (for the divisibility checks) defaults to the launcher's `WORLD_SIZE` or 1.
    """
    raw = load_composed(Path(path))
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise RecipeError([f"override {o!r} is not of the form key=value" for o in bad])
    try:
        merged = resolve_size(OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides))))
        # without a run_name the `${run_name}` paths cannot resolve: leave them as written
        # and let the converter list every missing value, run_name among them
        data = OmegaConf.to_container(merged, resolve="run_name" in merged)
    except OmegaConfBaseException as err:
        raise RecipeError(f"{path}: {err}") from err
    cfg = recipe_from_dict(data)  # type: ignore[arg-type]
    if world_size is None:
        world_size, _ = world_from_environment()
    validate_recipe(cfg, world_size)
    return cfg


def recipe_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Convert plain recipe data (already merged and resolved) into a TrainConfig.

    Defaults that interpolate other keys (`runs/${run_name}/...`) are resolved here against
    the recipe, so they stay written once, on the dataclass.
    """
    if isinstance(data, dict):
        stale = _old_run_name_keys(data)
        if stale:
            raise RecipeError(
                [f"{key}: '{{run_name}}' is not replaced; write '${{run_name}}'" for key in stale]
            )
        data = _with_interpolated_defaults(data)
    problems = hf_recipe_problems(data)
    if problems:
        raise RecipeError(problems)
    return convert(TrainConfig, data)


def recipe_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested data of a recipe (for W&B hyperparameters and a saved copy of the run)."""
    return _plain(cfg)


_OLD_RUN_NAME = re.compile(r"(?<!\$)\{run_name\}")


def _old_run_name_keys(value: Any, key: str = "") -> list[str]:
    """Key paths of values that still use the `{run_name}` form an earlier version replaced."""
    if isinstance(value, str):
        return [key] if _OLD_RUN_NAME.search(value) else []
    if isinstance(value, dict):
        children = ((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{key}[{i}]", v) for i, v in enumerate(value))
    else:
        return []
    return [found for path, item in children for found in _old_run_name_keys(item, path)]


def _with_interpolated_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """`data` plus the TrainConfig defaults it lacks that interpolate it, resolved by OmegaConf."""
    missing = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if isinstance(f.default, str) and "${" in f.default and f.name not in data
    }
    if not missing or not isinstance(data.get("run_name"), str):
        return data  # nothing to fill, or no run_name: the converter names what is missing
    node = OmegaConf.create({**data, **missing})
    try:
        return {**data, **{name: node[name] for name in missing}}
    except OmegaConfBaseException as err:
        raise RecipeError(f"{err}") from err


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
