"""Model FLOPs of a batch and the card's measured bf16 matmul peak, for MFU.

MFU counts the work the model needs, not the work an implementation happens to do: encoder
matmuls on real tokens, attention only inside each document (and the window on local
layers), the MLM head on the masked tokens when training (what the loss needs) and on every
real token at inference (logits for all of them). Both sides get the same count, so a side
that pads or runs the head everywhere shows a lower MFU rather than a higher one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..model import ModernBertConfig


def attended_keys(length: int, half_window: int | None) -> int:
    """Query-key pairs inside one document of `length` tokens (band `|i-j| <= half_window`)."""
    if half_window is None or half_window >= length - 1:
        return length * length
    h = half_window
    # Full band of 2h+1 keys, minus the triangles cut off at both ends of the document.
    return length * (2 * h + 1) - h * (h + 1)


def forward_flops(config: ModernBertConfig, doc_lengths: Sequence[int], head_tokens: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the encoder over `doc_lengths` and the MLM head
    over `head_tokens` tokens."""
    d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    tokens = sum(doc_lengths)
    per_layer_token = 2 * (4 * d * d + 3 * d * f)  # Wqkv + Wo + Wi (2f) + Wo (f)
    flops = config.num_hidden_layers * per_layer_token * tokens
    for layer in range(config.num_hidden_layers):
        half = None if config.is_global_layer(layer) else config.local_attention // 2
        pairs = sum(attended_keys(n, half) for n in doc_lengths)
        flops += 2 * 2 * d * pairs  # scores (QK^T) and weighted sum (PV)
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
        return forward_flops(config, doc_lengths, sum(doc_lengths))
    raise ValueError(f"phase must be 'train' or 'inference', got {phase!r}")


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
