"""Varlen attention on flash-attn 2 (CUDA, fp16/bf16), imported only when used.

Fulfils the backend contract of `base.py` with one `flash_attn_varlen_func` call per layer
on the flat tokens (`cu_seqlens` keeps documents apart); a local layer passes its band as
`window_size=(half_window, half_window)`. `flash_attn_available()` says, without importing
the package, whether `auto` may pick it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ..varlen import Varlen


def flash_attn_available() -> bool:
    """True when the `flash_attn` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("flash_attn") is not None


@dataclass
class FlashPlan:
    cu_seqlens: torch.Tensor
    max_seqlen: int
    window: tuple[int, int]


class FlashAttnBackend:
    """`flash_attn_varlen_func` on the flat tokens; local layers use its `window_size`."""

    name = "flash_attn"

    def plan(self, varlen: Varlen, half_window: int | None) -> FlashPlan:
        if not flash_attn_available():
            raise ValueError(
                "attn_backend='flash_attn' needs the flash_attn package (pip install flash-attn); "
                "use 'sdpa' or 'auto' without it"
            )
        if varlen.cu_seqlens.device.type != "cuda":
            raise ValueError(
                f"attn_backend='flash_attn' runs on CUDA only, got tensors on "
                f"{varlen.cu_seqlens.device}; use 'sdpa' or 'auto'"
            )
        window = (-1, -1) if half_window is None else (half_window, half_window)
        return FlashPlan(varlen.cu_seqlens, varlen.max_seqlen, window)

    def attend(self, q, k, v, plan: FlashPlan, dropout_p: float) -> torch.Tensor:
        from flash_attn import flash_attn_varlen_func

        dtype = q.dtype
        v = v.contiguous()  # let the fused qkv buffer go: flash-attn keeps v for the backward
        if dtype not in (torch.float16, torch.bfloat16):
            # flash-attn has no fp32 kernel: run in bf16, hand back the caller's dtype.
            q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
        out = flash_attn_varlen_func(
            q,
            k,
            v,
            cu_seqlens_q=plan.cu_seqlens,
            cu_seqlens_k=plan.cu_seqlens,
            max_seqlen_q=plan.max_seqlen,
            max_seqlen_k=plan.max_seqlen,
            dropout_p=dropout_p,
            window_size=plan.window,
        )
        return out.to(dtype)
