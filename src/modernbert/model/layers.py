"""The building blocks of ModernBERT, all working on flat real tokens `[T, hidden]`.

Submodule and parameter names are those of transformers' ModernBERT (`Wqkv`, `Wo`, `Wi`,
`attn_norm`, `mlp_norm`, ...), so a state dict converts to Hugging Face without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import get_activation
from .attention import AttentionBackend
from .config import ModernBertConfig
from .rotary import apply_rope, rope_tables
from .varlen import Varlen


def layer_norm(config: ModernBertConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class AttentionContext:
    """What every layer of one forward pass shares: the batch layout, the backend, and the
    per-batch work (attention plans, RoPE tables) computed once instead of once per layer."""

    def __init__(self, varlen: Varlen, backend: AttentionBackend, head_dim: int):
        self.varlen = varlen
        self.backend = backend
        self.head_dim = head_dim
        self._plans: dict[int | None, object] = {}
        self._rope: dict[tuple[float, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def rope(self, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (theta, dtype)
        if key not in self._rope:
            self._rope[key] = rope_tables(self.varlen.positions, self.head_dim, theta, dtype)
        return self._rope[key]

    def plan(self, half_window: int | None) -> object:
        """The backend's plan for this batch and window, made once per forward."""
        if half_window is not None and half_window >= self.varlen.max_seqlen - 1:
            half_window = None  # the window spans every document: share the global plan
        if half_window not in self._plans:
            self._plans[half_window] = self.backend.plan(self.varlen, half_window)
        return self._plans[half_window]


class Embeddings(nn.Module):
    """Token embedding -> LayerNorm -> dropout (no position embedding: RoPE does that)."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = layer_norm(config)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.tok_embeddings(input_ids)))


class Attention(nn.Module):
    """Fused-QKV self-attention with RoPE; global or sliding-window by layer index."""

    def __init__(self, config: ModernBertConfig, layer_id: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_p = config.attention_dropout
        if config.is_global_layer(layer_id):
            self.half_window, self.rope_theta = None, config.global_rope_theta
        else:
            self.half_window, self.rope_theta = config.local_attention // 2, config.local_rope_theta
        self.Wqkv = nn.Linear(
            config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias
        )
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.attention_dropout)

    def forward(self, hidden: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        total = hidden.shape[0]
        qkv = self.Wqkv(hidden).view(total, 3, self.num_heads, self.head_dim)
        # unbind rather than slicing: its backward is one stack of dq, dk, dv, no zero-fill.
        q, k, v = qkv.unbind(1)
        cos, sin = ctx.rope(self.rope_theta, qkv.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        dropout_p = self.dropout_p if self.training else 0.0
        out = ctx.backend.attend(q, k, v, ctx.plan(self.half_window), dropout_p)
        return self.out_drop(self.Wo(out.reshape(total, -1)))

    def extra_repr(self) -> str:
        window = "global" if self.half_window is None else f"half_window={self.half_window}"
        return f"heads={self.num_heads}, {window}, rope_theta={self.rope_theta}"


class MLP(nn.Module):
    """GeGLU: `Wo(drop(act(input) * gate))` with `input, gate = Wi(x).chunk(2)`."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = get_activation(config.hidden_activation)
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        inputs, gate = self.Wi(hidden).chunk(2, dim=-1)
        return self.Wo(self.drop(self.act(inputs) * gate))


class EncoderLayer(nn.Module):
    """Pre-norm residual block; layer 0 skips the attention norm (the embeddings are normed)."""

    def __init__(self, config: ModernBertConfig, layer_id: int):
        super().__init__()
        self.attn_norm = nn.Identity() if layer_id == 0 else layer_norm(config)
        self.attn = Attention(config, layer_id)
        self.mlp_norm = layer_norm(config)
        self.mlp = MLP(config)

    def forward(self, hidden: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        hidden = hidden + self.attn(self.attn_norm(hidden), ctx)
        return hidden + self.mlp(self.mlp_norm(hidden))


class PredictionHead(nn.Module):
    """MLM head before the decoder: dense -> activation -> LayerNorm."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = get_activation(config.hidden_activation)
        self.norm = layer_norm(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden)))
