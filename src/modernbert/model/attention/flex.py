"""Varlen attention on `torch.nn.attention.flex_attention` (compiled, CUDA only).

All documents of the batch form one long row; a block mask built from each token's document
id (and the band on local layers) keeps documents apart and skips empty blocks entirely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..varlen import Varlen

_BLOCK = 128
_compiled_flex = None


def _flex_attention():
    """`flex_attention` compiled once per process (uncompiled it materialises the scores)."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


@dataclass
class FlexPlan:
    block_mask: Any
    padded: int


class FlexBackend:
    """One flex-attention call over the whole batch with a document (+ window) block mask."""

    name = "flex"

    def plan(self, varlen: Varlen, half_window: int | None) -> FlexPlan:
        device = varlen.cu_seqlens.device
        if device.type != "cuda":
            raise ValueError(
                f"attn_backend='flex' runs on CUDA only, got tensors on {device}; use 'sdpa'"
            )
        from torch.nn.attention.flex_attention import create_block_mask

        total = varlen.num_tokens
        # Pad to the caller's full row count so batches of one run share one compiled shape.
        padded = _BLOCK * math.ceil(max(total, math.prod(varlen.input_shape)) / _BLOCK)
        doc = torch.repeat_interleave(
            torch.arange(varlen.num_docs, device=device), torch.diff(varlen.cu_seqlens).long()
        )
        doc = F.pad(doc, (0, padded - total), value=-1)  # padding attends only to padding

        if half_window is None:

            def mask_mod(b, h, q_idx, kv_idx):
                return doc[q_idx] == doc[kv_idx]
        else:

            def mask_mod(b, h, q_idx, kv_idx):
                near = (q_idx - kv_idx).abs() <= half_window
                return (doc[q_idx] == doc[kv_idx]) & near

        block_mask = create_block_mask(
            mask_mod, None, None, padded, padded, device=device, _compile=True
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
        out = _flex_attention()(q, k, v, block_mask=plan.block_mask)
        return out[0].transpose(0, 1)[:total]
