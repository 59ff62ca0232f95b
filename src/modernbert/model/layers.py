"""The building blocks of ModernBERT, all working on flat real tokens `[T, hidden]`.

Submodule and parameter names are those of transformers' ModernBERT (`Wqkv`, `Wo`, `Wi`,
`attn_norm`, `mlp_norm`, ...), so a state dict converts to Hugging Face without renaming.
"""

from __future__ import annotations

from collections.abc import Callable

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

    def __init__(
        self, varlen: Varlen, backend: AttentionBackend, head_dim: int, dtype: torch.dtype
    ):
        self.varlen = varlen
        self.backend = backend
        self.head_dim = head_dim
        self.dtype = dtype
        """The compute dtype of q and k (the autocast dtype when autocast is on)."""
        self._plans: dict[int | None, object] = {}
        self._rope: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope(self, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        if theta not in self._rope:
            self._rope[theta] = rope_tables(self.varlen.positions, self.head_dim, theta, self.dtype)
        return self._rope[theta]

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
    """Fused-QKV self-attention with RoPE; global or sliding-window by layer index.

    Its two halves, `project` and `output`, run inside the layer's compilable regions; the
    attention kernel between them is called by `EncoderLayer.forward`."""

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

    def project(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v `[T, heads, head_dim]` with RoPE applied to q and k."""
        total = hidden.shape[0]
        qkv = self.Wqkv(hidden).view(total, 3, self.num_heads, self.head_dim)
        # unbind rather than slicing: its backward is one stack of dq, dk, dv, no zero-fill.
        q, k, v = qkv.unbind(1)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def output(self, attended: torch.Tensor) -> torch.Tensor:
        """The output projection of the attention result `[T, heads, head_dim]`."""
        return self.out_drop(self.Wo(attended.reshape(attended.shape[0], -1)))

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
    """Pre-norm residual block; layer 0 skips the attention norm (the embeddings are normed).

    The forward is three steps: `pre_attention` (norm, Wqkv, RoPE) and `post_attention`
    (Wo, residual, norm, GeGLU, residual) are pure tensor code that `compile_regions` can
    compile with a dynamic token dimension; the attention call between them takes the
    per-batch plan (whose objects change every batch) and stays outside compiled code.
    """

    def __init__(self, config: ModernBertConfig, layer_id: int):
        super().__init__()
        self.attn_norm = nn.Identity() if layer_id == 0 else layer_norm(config)
        self.attn = Attention(config, layer_id)
        self.mlp_norm = layer_norm(config)
        self.mlp = MLP(config)
        self.compiled_regions: tuple[Callable, Callable] | None = None
        """(pre_attention, post_attention) compiled by `compile_regions`; None runs eager."""

    def pre_attention(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.attn.project(self.attn_norm(hidden), cos, sin)

    def post_attention(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.attn.output(attended)
        return hidden + self.mlp(self.mlp_norm(hidden))

    def forward(self, hidden: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        attn = self.attn
        pre, post = self.compiled_regions or (self.pre_attention, self.post_attention)
        q, k, v = pre(hidden, *ctx.rope(attn.rope_theta))
        dropout_p = attn.dropout_p if self.training else 0.0
        attended = ctx.backend.attend(q, k, v, ctx.plan(attn.half_window), dropout_p)
        return post(hidden, attended)


class PredictionHead(nn.Module):
    """MLM head before the decoder: dense -> activation -> LayerNorm."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = get_activation(config.hidden_activation)
        self.norm = layer_norm(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden)))
