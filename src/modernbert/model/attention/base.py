"""The contract every attention backend fulfils.

A backend sees the flat real tokens of a batch (`q, k, v [T, heads, head_dim]`, RoPE already
applied) and the `Varlen` that says where each document starts. Documents never attend to
each other; a local layer additionally restricts each query to keys at most `half_window`
tokens away (`|i - j| <= half_window`, the same band as flash-attn's `window_size`).

Work that depends only on the batch layout (index tensors, masks, block masks) goes in
`plan`, which the model calls once per forward and layer kind and shares across layers.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ..varlen import Varlen


class AttentionBackend(Protocol):
    """Variable-length, document-masked, optionally windowed self-attention."""

    name: str

    def plan(self, varlen: Varlen, half_window: int | None) -> Any:
        """Precompute what `attend` needs for this batch; `half_window=None` is global."""
        ...

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Any, dropout_p: float
    ) -> torch.Tensor:
        """Attention output `[T, heads, head_dim]` for `q, k, v [T, heads, head_dim]`."""
        ...
