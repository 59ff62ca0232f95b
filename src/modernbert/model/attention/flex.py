"""Varlen attention on `torch.nn.attention.flex_attention`: one call per layer, any device.

All documents of the batch form one long row. The block mask (which `_BLOCK x _BLOCK` tiles
hold a same-document pair, inside the band on local layers, and which tiles are full) is
worked out on the host from the document lengths and copied to the device, so building it
never reads the device; one mask per batch and layer type serves every layer. The row is
padded to a size class so steady-state batches reuse one compiled kernel.

On CUDA flex_attention runs compiled; elsewhere it runs eagerly (a dense reference, for
tests: `auto` never picks flex off CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..varlen import Varlen, document_ids, host_to_device

_BLOCK = 128
_SIZE_CLASSES_PER_OCTAVE = 8
"""Padded lengths are multiples of 1/8 of the power of two below T: at most 12.5% padding
rows (whose tiles are all skipped) and a handful of distinct compiled shapes."""
_compiled_flex = None


def _flex_attention(device: torch.device):
    """`flex_attention`, compiled once per process on CUDA (eager it materialises scores)."""
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention
    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def padded_length(total: int, block: int = _BLOCK) -> int:
    """The size class of `total` tokens: a multiple of `block` and of 1/8 of an octave."""
    granule = max(block, (1 << (max(total, 1).bit_length() - 1)) // _SIZE_CLASSES_PER_OCTAVE)
    granule = -(-granule // block) * block
    return -(-total // granule) * granule


def block_layout(
    doc: torch.Tensor, half_window: int | None, block: int = _BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(partial, full) `[n_blocks, n_blocks]` booleans for per-token document ids `doc`
    (-1 on padding): a tile is partial when some query-key pair in it may attend, full when
    every pair may (then the mask function is skipped there)."""
    blocks = doc.view(-1, block)
    real = blocks >= 0
    lo = torch.where(real, blocks, torch.iinfo(doc.dtype).max).amin(1)
    hi = torch.where(real, blocks, -1).amax(1)
    has = real.any(1)
    # Documents are contiguous, so a tile holds a same-document pair iff the document ranges
    # of its query block and key block overlap.
    touch = (
        has[:, None] & has[None, :] & (lo[:, None] <= hi[None, :]) & (lo[None, :] <= hi[:, None])
    )
    pure = real.all(1) & (lo == hi)
    full = pure[:, None] & pure[None, :] & (lo[:, None] == lo[None, :])
    if half_window is not None:
        idx = torch.arange(blocks.shape[0])
        apart = (idx[:, None] - idx[None, :]).abs()
        touch &= (apart - 1) * block + 1 <= half_window  # the closest pair is in the band
        full &= (apart + 1) * block - 1 <= half_window  # the farthest pair is too
    return touch & ~full, full


def _block_indices(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """flex's `(num_blocks [1, 1, nq], indices [1, 1, nq, nk])`, selected tiles first."""
    num = tiles.sum(1, dtype=torch.int32)
    order = torch.argsort((~tiles).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return num[None, None], order[None, None]


@dataclass
class FlexPlan:
    block_mask: Any
    padded: int


class FlexBackend:
    """One flex-attention call over the whole batch with a document (+ window) block mask."""

    name = "flex"

    def plan(self, varlen: Varlen, half_window: int | None) -> FlexPlan:
        from torch.nn.attention.flex_attention import BlockMask

        device = varlen.cu_seqlens.device
        total = varlen.num_tokens
        padded = padded_length(total)
        doc = F.pad(document_ids(varlen.seqlens, total), (0, padded - total), value=-1)
        partial, full = block_layout(doc, half_window)
        # The transposed (per key block) indices for the backward are made on the host too.
        host = BlockMask.from_kv_blocks(
            *_block_indices(partial), *_block_indices(full), BLOCK_SIZE=_BLOCK
        )
        doc_ids = host_to_device(doc, device)

        def same_document(b, h, q_idx, kv_idx):
            return (doc_ids[q_idx] == doc_ids[kv_idx]) & (doc_ids[q_idx] >= 0)

        def same_document_in_band(b, h, q_idx, kv_idx):
            near = (q_idx - kv_idx).abs() <= half_window
            return same_document(b, h, q_idx, kv_idx) & near

        fields = (
            "kv_num_blocks",
            "kv_indices",
            "full_kv_num_blocks",
            "full_kv_indices",
            "q_num_blocks",
            "q_indices",
            "full_q_num_blocks",
            "full_q_indices",
        )
        block_mask = BlockMask(
            seq_lengths=(padded, padded),
            **{name: host_to_device(getattr(host, name), device) for name in fields},
            BLOCK_SIZE=host.BLOCK_SIZE,
            mask_mod=same_document if half_window is None else same_document_in_band,
        )
        return FlexPlan(block_mask=block_mask, padded=padded)

    def attend(self, q, k, v, plan: FlexPlan, dropout_p: float) -> torch.Tensor:
        if dropout_p > 0:
            raise ValueError(
                "attn_backend='flex' has no attention dropout; set attention_dropout=0"
            )
        total = q.shape[0]
        q, k, v = (
            F.pad(x, (0, 0, 0, 0, 0, plan.padded - total)).transpose(0, 1)[None] for x in (q, k, v)
        )
        out = _flex_attention(q.device)(q, k, v, block_mask=plan.block_mask)
        return out[0].transpose(0, 1)[:total]
