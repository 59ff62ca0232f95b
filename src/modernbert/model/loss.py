"""Masked-LM cross-entropy that never holds fp32 logits for every masked token at once.

The loss over N masked tokens needs `N x vocab` logits: at 10k tokens x 50k vocab that is
2 GB in fp32, plus as much again for their gradient. Here the head and the tied decoder run
on chunks of rows, in the compute dtype, each chunk's cross-entropy is taken in fp32 and
summed in fp32, and every chunk is recomputed in the backward (activation checkpointing),
so the peak holds one chunk's logits: O(chunk x vocab) whatever N is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .config import IGNORE_INDEX

LOSS_CHUNK_ROWS = 1024
"""Masked tokens per loss chunk: 1024 x 50k vocab is ~100 MB of bf16 logits, big enough
for full-speed matmuls on a GPU, small enough that the chunk never caps the batch."""


def cross_entropy_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy in fp32 over the labelled rows of `logits` (any dtype)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def labelled_count(targets: torch.Tensor) -> torch.Tensor:
    """Rows that carry a target, at least 1 so a batch without any gives 0, not NaN (on the
    device: no sync)."""
    return (targets != IGNORE_INDEX).sum().clamp(min=1)


def chunk_sizes(rows: int, chunk_rows: int) -> list[int]:
    """`rows` cut into the fewest chunks of at most `chunk_rows`, of near-equal sizes: no
    ragged one-row tail, which a compiled chunk would specialise on (a recompile)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    count = max(1, -(-rows // chunk_rows))
    return [rows // count + (i < rows % count) for i in range(count)]


def chunked_cross_entropy(
    chunk_loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk_rows: int = LOSS_CHUNK_ROWS,
) -> torch.Tensor:
    """Mean cross-entropy of `chunk_loss_sum(hidden_rows, target_rows)` (the summed fp32
    loss of the head + decoder on those rows) over chunks of at most `chunk_rows` rows,
    each recomputed in the backward instead of keeping its logits. A single chunk is not
    recomputed: its logits are at most `chunk_rows x vocab` anyway."""
    sizes = chunk_sizes(int(hidden.shape[0]), chunk_rows)
    recompute = len(sizes) > 1 and torch.is_grad_enabled() and hidden.requires_grad
    total = None
    for rows, row_targets in zip(hidden.split(sizes), targets.split(sizes)):
        if recompute:
            part = checkpoint(chunk_loss_sum, rows, row_targets, use_reentrant=False)
        else:
            part = chunk_loss_sum(rows, row_targets)
        total = part if total is None else total + part
    return total / labelled_count(targets)
