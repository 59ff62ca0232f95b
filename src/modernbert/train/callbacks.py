"""Training callbacks by name (`CALLBACKS`): throughput/MFU, LR, gradient norm, packing, memory.

Every builder takes `(options, recipe)` and returns a Composer Callback (or None when it has
nothing to do on this machine, e.g. the memory monitor without CUDA). `build_callbacks(recipe)`
builds the recipe's `callbacks:` section in order, and always includes `grad_norm` when
`max_grad_norm` is set, because that callback is where clipping happens (see GradNormMonitor).

Metric keys: `throughput/{tokens,samples,batches}_per_sec`, `throughput/device/tokens_per_sec`,
`throughput/mfu`, `lr-<Optimizer>/group<i>`, `grad_norm/total`, `grad_norm/clipped`,
`data/packing_efficiency`, `memory/*`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from composer.callbacks import LRMonitor, MemoryMonitor
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from modernbert.train.registry import Registry

if TYPE_CHECKING:
    from modernbert.model import ModernBertConfig
    from modernbert.train.config import TrainConfig

CALLBACKS: Registry = Registry("callback")

# Dense bf16 tensor-core peaks (no sparsity), matched on torch.cuda.get_device_name().lower()
# in this order; the first fragment found wins.
PEAK_BF16_FLOPS: list[tuple[tuple[str, ...], float]] = [
    (("h200",), 989.4e12),
    (("h100", "pcie"), 756.0e12),
    (("h100", "nvl"), 835.0e12),
    (("h100",), 989.4e12),  # SXM
    (("a100",), 312.0e12),
]


def flops_per_token(model: ModernBertConfig, seq_len: int, head_fraction: float = 1.0) -> float:
    """Training FLOPs (forward + backward = 3x forward) per input token.

    - Encoder matmuls: 6 * N, with N = layers * (4 d^2 [Wqkv, Wo] + 3 d ffn [Wi: d->2 ffn, Wo]),
      the non-embedding weights (norms are not matmuls and are left out).
    - Attention scores and the weighted sum: 2 matmuls * 2 FLOPs * d * keys per query, times 3
      for training; keys = seq_len on global layers, min(seq_len, local_attention) on local
      ones (sliding window), so local windows are accounted for.
    - MLM head (dense d^2 + decoder d * vocab) run on `head_fraction` of the tokens: the
      masking rate with sparse prediction, 1.0 otherwise.

    `seq_len` is the row length; with packing, attention is per document, so this is an upper
    bound on the attention term (the matmul term dominates at ModernBERT's sizes).
    """
    d, ffn, layers = model.hidden_size, model.intermediate_size, model.num_hidden_layers
    matmul = 6.0 * layers * (4 * d * d + 3 * d * ffn)
    attention = 0.0
    for layer in range(layers):
        keys = seq_len if model.is_global_layer(layer) else min(seq_len, model.local_attention)
        attention += 3 * 2 * 2 * d * keys
    head = 6.0 * head_fraction * (d * d + d * model.vocab_size)
    return matmul + attention + head


def detect_peak_flops(precision: str) -> float | None:
    """Peak FLOP/s of this GPU for bf16 training; None on CPU, other GPUs or other precisions."""
    if precision != "amp_bf16" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name().lower()
    for fragments, peak in PEAK_BF16_FLOPS:
        if all(f in name for f in fragments):
            return peak
    return None


def _global_sum(state: State, values: list[float]) -> list[float]:
    """Sum small counters over all ranks (no-op on one process)."""
    if dist.get_world_size() == 1:
        return values
    tensor = state.device.tensor_to_device(torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(tensor, reduce_operation="SUM")
    return tensor.tolist()


def _real_tokens(batch: Any) -> tuple[int, int, int]:
    """(real tokens, rows, row length) of a batch dict; real = attention_mask sum."""
    mask = batch["attention_mask"]
    rows, length = mask.shape
    return int(mask.sum().item()), int(rows), int(length)


class SpeedMonitor(Callback):
    """Throughput over a window of batches, counting only real (non-padding) tokens.

    Composer's own SpeedMonitor counts whatever the DataSpec reports; this one reads the
    attention mask, so tokens/s and MFU are honest for packed and padded batches alike.
    Time is Composer's training wall clock, which excludes evaluation.
    """

    def __init__(
        self, window_size: int, flops_per_token: float | None, peak_flops: float | None
    ) -> None:
        if window_size < 1:
            raise ValueError(f"speed_monitor.window_size must be >= 1, got {window_size}")
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        # (wall-clock seconds, cumulative local real tokens, cumulative local rows)
        self.history: deque[tuple[float, int, int]] = deque(maxlen=window_size + 1)
        self.tokens = 0
        self.rows = 0

    def batch_end(self, state: State, logger: Logger) -> None:
        tokens, rows, _ = _real_tokens(state.batch)
        self.tokens += tokens
        self.rows += rows
        self.history.append((state.timestamp.total_wct.total_seconds(), self.tokens, self.rows))
        if len(self.history) < 2:
            return
        (t0, tok0, rows0), (t1, tok1, rows1) = self.history[0], self.history[-1]
        elapsed = t1 - t0
        if elapsed <= 0:
            return
        tokens, rows = _global_sum(state, [float(tok1 - tok0), float(rows1 - rows0)])
        world = dist.get_world_size()
        metrics = {
            "throughput/tokens_per_sec": tokens / elapsed,
            "throughput/samples_per_sec": rows / elapsed,
            "throughput/batches_per_sec": (len(self.history) - 1) / elapsed,
            "throughput/device/tokens_per_sec": tokens / elapsed / world,
        }
        if self.flops_per_token and self.peak_flops:
            flops = tokens / elapsed * self.flops_per_token
            metrics["throughput/mfu"] = flops / (world * self.peak_flops)
        logger.log_metrics(metrics)


class GradNormMonitor(Callback):
    """Logs the total gradient norm before clipping, and clips to `max_norm` when set.

    Clipping lives here, not in Composer's GradientClipping algorithm, because Composer runs
    algorithms before callbacks on AFTER_TRAIN_BATCH: a separate monitor would only ever see
    the clipped norm. Measuring and clipping in one place gives the true norm at the cost of a
    single norm computation. Works with DDP (gradients already reduced), FSDP1 (the root
    module's `clip_grad_norm_`) and DTensor parameters (FSDP2).
    """

    def __init__(self, max_norm: float | None) -> None:
        if max_norm is not None and max_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_norm}")
        self.max_norm = max_norm

    def after_train_batch(self, state: State, logger: Logger) -> None:
        norm = self.clip(state.model)
        if norm is None:
            return
        metrics = {"grad_norm/total": norm}
        if self.max_norm is not None:
            metrics["grad_norm/clipped"] = float(norm > self.max_norm)
        logger.log_metrics(metrics)

    def clip(self, model: torch.nn.Module) -> float | None:
        """Total L2 norm of the gradients (before clipping); clips them in place if asked."""
        limit = self.max_norm if self.max_norm is not None else float("inf")
        root = _fsdp_root(model)
        if root is not None:
            return float(root.clip_grad_norm_(max_norm=limit))
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
        return float(total)


def _fsdp_root(model: torch.nn.Module) -> torch.nn.Module | None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    for module in model.modules():
        if isinstance(module, FullyShardedDataParallel) and module.check_is_root():
            return module
    return None


class PackingEfficiency(Callback):
    """Fraction of real tokens in each training batch: real / (rows * row length), all ranks."""

    def before_train_batch(self, state: State, logger: Logger) -> None:
        tokens, rows, length = _real_tokens(state.batch)
        tokens, slots = _global_sum(state, [float(tokens), float(rows * length)])
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


@CALLBACKS.register("speed_monitor", options=SpeedMonitorConfig)
def _speed(opts: SpeedMonitorConfig, recipe: TrainConfig) -> Callback:
    model = recipe.model
    seq_len = recipe.train_loader.max_seq_len
    head = recipe.train_loader.mlm_probability if model.sparse_prediction else 1.0
    peak = opts.peak_flops if opts.peak_flops is not None else detect_peak_flops(recipe.precision)
    return SpeedMonitor(opts.window_size, flops_per_token(model, seq_len, head), peak)


@CALLBACKS.register("lr_monitor", options=NoOptions)
def _lr(opts: NoOptions, recipe: TrainConfig) -> Callback:
    return LRMonitor()


@CALLBACKS.register("grad_norm", options=NoOptions)
def _grad_norm(opts: NoOptions, recipe: TrainConfig) -> Callback:
    return GradNormMonitor(recipe.max_grad_norm)


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
        sections["grad_norm"] = NoOptions()
    built = [CALLBACKS.get(name)(opts, recipe) for name, opts in sections.items()]
    return [cb for cb in built if cb is not None]
