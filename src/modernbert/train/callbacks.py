"""Training callbacks by name (`CALLBACKS`): throughput/MFU, LR, gradient norm, packing, memory.

Every builder takes `(options, recipe)` and returns a Composer Callback (or None when it has
nothing to do on this machine, e.g. the memory monitor without CUDA). `build_callbacks(recipe)`
builds the recipe's `callbacks:` section in order, and always includes `grad_norm` when
`max_grad_norm` is set, because that callback is where clipping happens (see GradNormMonitor).

Counts come from the batch's host-side layout (data/flat.py) and the gradient norm stays on
the device until its logging interval, so on one rank no callback reads the device per step.

Metric keys: `throughput/{tokens,samples,batches}_per_sec`, `throughput/device/tokens_per_sec`,
`throughput/mfu`, `lr-<Optimizer>/group<i>`, `grad_norm/{total,max,clipped}`,
`data/packing_efficiency`, `memory/*`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from composer.callbacks import LRMonitor, MemoryMonitor
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from modernbert.bench.flops import datasheet_peak_flops, mfu, step_flops
from modernbert.data.flat import layout_of
from modernbert.train.registry import Registry

if TYPE_CHECKING:
    from modernbert.model import ModernBertConfig
    from modernbert.train.config import TrainConfig

CALLBACKS: Registry = Registry("callback")


def detect_peak_flops(precision: str) -> float | None:
    """Peak FLOP/s of this GPU for bf16 training; None on CPU, other GPUs or other precisions."""
    if precision != "amp_bf16" or not torch.cuda.is_available():
        return None
    return datasheet_peak_flops(torch.cuda.get_device_name())


def _global_sum(state: State, values: list[float]) -> list[float]:
    """Sum small counters over all ranks (no-op, and no device, on one process)."""
    if dist.get_world_size() == 1:
        return values
    tensor = state.device.tensor_to_device(torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(tensor, reduce_operation="SUM")
    return tensor.tolist()


class SpeedMonitor(Callback):
    """Throughput and MFU over a window of batches, counting only real tokens.

    Tokens, rows and model FLOPs (bench/flops.py: attention per document and window, head on
    the masked tokens) come from each batch's host-side layout. Time is Composer's training
    wall clock, which excludes evaluation.
    """

    def __init__(
        self, window_size: int, model: ModernBertConfig | None, peak_flops: float | None
    ) -> None:
        if window_size < 1:
            raise ValueError(f"speed_monitor.window_size must be >= 1, got {window_size}")
        self.model = model
        self.peak_flops = peak_flops
        # (wall-clock seconds, cumulative local real tokens, rows, model FLOPs)
        self.history: deque[tuple[float, int, int, float]] = deque(maxlen=window_size + 1)
        self.tokens = 0
        self.rows = 0
        self.flops = 0.0

    def batch_end(self, state: State, logger: Logger) -> None:
        layout = layout_of(state.batch)
        self.tokens += layout.num_tokens
        self.rows += layout.num_rows
        if self.model is not None:
            self.flops += step_flops(self.model, layout.seqlens, layout.num_masked, "train")
        now = state.timestamp.total_wct.total_seconds()
        self.history.append((now, self.tokens, self.rows, self.flops))
        if len(self.history) < 2:
            return
        (t0, tok0, rows0, flops0), (t1, tok1, rows1, flops1) = self.history[0], self.history[-1]
        elapsed = t1 - t0
        if elapsed <= 0:
            return
        tokens, rows, flops = _global_sum(
            state, [float(tok1 - tok0), float(rows1 - rows0), flops1 - flops0]
        )
        world = dist.get_world_size()
        metrics = {
            "throughput/tokens_per_sec": tokens / elapsed,
            "throughput/samples_per_sec": rows / elapsed,
            "throughput/batches_per_sec": (len(self.history) - 1) / elapsed,
            "throughput/device/tokens_per_sec": tokens / elapsed / world,
        }
        if self.model is not None and self.peak_flops:
            metrics["throughput/mfu"] = mfu(flops, elapsed, world, self.peak_flops)
        logger.log_metrics(metrics)


class GradNormMonitor(Callback):
    """Clips the gradients to `max_norm` every step and logs their total norm (before
    clipping) every `interval` steps, without reading the device in between.

    Clipping lives here, not in Composer's GradientClipping algorithm, because Composer runs
    algorithms before callbacks on AFTER_TRAIN_BATCH: a separate monitor would only ever see
    the clipped norm. Each step's norm stays on the device (clipping scales by it there); at
    the interval the norms are read at once: `grad_norm/total` is the norm of that step,
    `grad_norm/max` the largest and `grad_norm/clipped` the fraction of clipped steps since
    the last log. Works with DDP (gradients already reduced), FSDP1 (the root module's
    `clip_grad_norm_`) and DTensor parameters (FSDP2).
    """

    def __init__(self, max_norm: float | None, interval: int) -> None:
        if max_norm is not None and max_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_norm}")
        if interval < 1:
            raise ValueError(f"grad_norm.interval must be >= 1 step, got {interval}")
        self.max_norm = max_norm
        self.interval = interval
        self.pending: list[torch.Tensor] = []

    def after_train_batch(self, state: State, logger: Logger) -> None:
        norm = self.clip(state.model)
        if norm is None:
            return
        self.pending.append(norm.detach().reshape(()).float())
        if (int(state.timestamp.batch) + 1) % self.interval == 0:
            self.flush(logger)

    def flush(self, logger: Logger) -> None:
        """Log the norms held since the last log (one device read)."""
        if not self.pending:
            return
        norms = torch.stack(self.pending).tolist()
        self.pending.clear()
        metrics = {"grad_norm/total": norms[-1], "grad_norm/max": max(norms)}
        if self.max_norm is not None:
            metrics["grad_norm/clipped"] = sum(n > self.max_norm for n in norms) / len(norms)
        logger.log_metrics(metrics)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.flush(logger)

    def clip(self, model: torch.nn.Module) -> torch.Tensor | None:
        """Total L2 norm of the gradients (before clipping), on the device; clips them in
        place if asked."""
        limit = self.max_norm if self.max_norm is not None else float("inf")
        root = _fsdp_root(model)
        if root is not None:
            return root.clip_grad_norm_(max_norm=limit)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return None
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=None)
        if hasattr(total, "full_tensor"):  # DTensor (FSDP2): reduce the shards' norms
            total = total.full_tensor()
        if self.max_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(
                [p for p in model.parameters() if p.grad is not None], self.max_norm, total
            )
        return total


def _fsdp_root(model: torch.nn.Module) -> torch.nn.Module | None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    for module in model.modules():
        if isinstance(module, FullyShardedDataParallel) and module.check_is_root():
            return module
    return None


class PackingEfficiency(Callback):
    """Fraction of real tokens in each training batch: real / (rows * row length), all ranks,
    from the batch's host-side layout."""

    def before_train_batch(self, state: State, logger: Logger) -> None:
        layout = layout_of(state.batch)
        slots = layout.num_rows * layout.row_length
        tokens, slots = _global_sum(state, [float(layout.num_tokens), float(slots)])
        if slots > 0:
            logger.log_metrics({"data/packing_efficiency": tokens / slots})


# -- options (the YAML `callbacks:` entries) and builders ---------------------------------


@dataclass
class SpeedMonitorConfig:
    window_size: int = 20  # batches averaged per throughput figure
    peak_flops: float | None = None  # peak FLOP/s of one device; null: detect (A100/H100/H200 bf16)


@dataclass
class NoOptions:
    """Callbacks without options (`lr_monitor: {}`)."""


@dataclass
class GradNormConfig:
    # Steps between logged norms: each log reads the device once, so 1 costs a sync a step
    # (between the backward and the optimizer step); clipping happens every step regardless.
    interval: int = 10


@CALLBACKS.register("speed_monitor", options=SpeedMonitorConfig)
def _speed(opts: SpeedMonitorConfig, recipe: TrainConfig) -> Callback:
    peak = opts.peak_flops if opts.peak_flops is not None else detect_peak_flops(recipe.precision)
    return SpeedMonitor(opts.window_size, recipe.model, peak)


@CALLBACKS.register("lr_monitor", options=NoOptions)
def _lr(opts: NoOptions, recipe: TrainConfig) -> Callback:
    return LRMonitor()


@CALLBACKS.register("grad_norm", options=GradNormConfig)
def _grad_norm(opts: GradNormConfig, recipe: TrainConfig) -> Callback:
    return GradNormMonitor(recipe.max_grad_norm, opts.interval)


@CALLBACKS.register("packing_efficiency", options=NoOptions)
def _packing(opts: NoOptions, recipe: TrainConfig) -> Callback:
    return PackingEfficiency()


@CALLBACKS.register("memory_monitor", options=NoOptions)
def _memory(opts: NoOptions, recipe: TrainConfig) -> Callback | None:
    return MemoryMonitor() if torch.cuda.is_available() else None  # CUDA statistics only


def build_callbacks(recipe: TrainConfig) -> list[Callback]:
    """The recipe's callbacks, in order; `grad_norm` is added when clipping is asked for."""
    sections = dict(recipe.callbacks)
    if recipe.max_grad_norm is not None and "grad_norm" not in sections:
        sections["grad_norm"] = GradNormConfig()
    built = [CALLBACKS.get(name)(opts, recipe) for name, opts in sections.items()]
    return [cb for cb in built if cb is not None]
