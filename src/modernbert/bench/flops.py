"""The one FLOP count and MFU definition: model FLOPs of a batch, from host-side lengths.

MFU counts the work the model needs, not the work an implementation happens to do: encoder
matmuls on real tokens, attention only inside each document (and the window on local
layers), the MLM head on the masked tokens when training (what the loss needs) and on every
real token at inference (logits for all of them). The benchmark gives both sides the same
count, so a side that pads or runs the head everywhere shows a lower MFU rather than a
higher one; the training speed monitor counts each batch from its document lengths.
docs/benchmarks.md relates this count to the paper's 6N-style figure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..model import ModernBertConfig

# Dense bf16 tensor-core peaks (no sparsity), matched on torch.cuda.get_device_name().lower()
# in this order; the first entry whose fragments all appear wins.
PEAK_BF16_FLOPS: list[tuple[tuple[str, ...], float]] = [
    (("h200",), 989.4e12),
    (("h100", "pcie"), 756.0e12),
    (("h100", "nvl"), 835.0e12),
    (("h100",), 989.4e12),  # SXM
    (("a100",), 312.0e12),
]


def datasheet_peak_flops(device_name: str) -> float | None:
    """The card's dense bf16 peak from its name; None for cards not in the table."""
    name = device_name.lower()
    for fragments, peak in PEAK_BF16_FLOPS:
        if all(f in name for f in fragments):
            return peak
    return None


def attended_keys(length: int | np.ndarray, half_window: int | None) -> int | np.ndarray:
    """Query-key pairs inside documents of `length` tokens (band `|i-j| <= half_window`);
    elementwise on an array of lengths."""
    n = np.asarray(length, dtype=np.int64)
    full = n * n
    if half_window is None:
        return full if n.ndim else int(full)
    h = half_window
    # Full band of 2h+1 keys, minus the triangles cut off at both ends of the document.
    band = np.where(h >= n - 1, full, n * (2 * h + 1) - h * (h + 1))
    return band if n.ndim else int(band)


def forward_flops(config: ModernBertConfig, doc_lengths: Sequence[int], head_tokens: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the encoder over `doc_lengths` and the MLM head
    over `head_tokens` tokens."""
    d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    lengths = np.asarray(doc_lengths, dtype=np.int64)
    tokens = int(lengths.sum())
    per_layer_token = 2 * (4 * d * d + 3 * d * f)  # Wqkv + Wo + Wi (2f) + Wo (f)
    flops = config.num_hidden_layers * per_layer_token * tokens
    pairs = {}  # attended pairs per window size, counted once per layer type
    for layer in range(config.num_hidden_layers):
        half = None if config.is_global_layer(layer) else config.local_attention // 2
        if half not in pairs:
            pairs[half] = int(attended_keys(lengths, half).sum())
        flops += 2 * 2 * d * pairs[half]  # scores (QK^T) and weighted sum (PV)
    flops += head_tokens * 2 * (d * d + d * v)  # head dense + tied decoder
    return float(flops)


def step_flops(
    config: ModernBertConfig,
    doc_lengths: Sequence[int],
    masked_tokens: int,
    phase: str,
) -> float:
    """Model FLOPs of one step: training is forward + backward (3x forward)."""
    if phase == "train":
        return 3.0 * forward_flops(config, doc_lengths, masked_tokens)
    if phase == "inference":
        return forward_flops(config, doc_lengths, int(np.sum(doc_lengths)))
    raise ValueError(f"phase must be 'train' or 'inference', got {phase!r}")


def mfu(flops: float, seconds: float, devices: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: model FLOPs done per second over what the devices could."""
    return flops / seconds / (devices * peak_flops)


def measure_matmul_peak(
    device: torch.device, size: int = 8192, iters: int = 20, dtype: torch.dtype = torch.bfloat16
) -> float:
    """Achieved FLOP/s of a large square matmul: the practical peak MFU is measured against."""
    if device.type != "cuda":
        raise ValueError(f"the matmul peak is measured on CUDA only, got device {device}")
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return 2.0 * size**3 * iters / elapsed
