"""The model's hyper-parameters: one typed, validated dataclass.

Defaults are ModernBERT-base as pretrained (both RoPE thetas at 10k; context extension
raises `global_rope_theta` to 160k). Names follow transformers' `ModernBertConfig` so the
Hugging Face conversion maps them one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..special_tokens import CONFIG_ID_FIELDS
from ..suggest import did_you_mean
from .activations import ACTIVATIONS
from .attention import BACKEND_NAMES

IGNORE_INDEX = -100
"""Label of positions that carry no MLM target (the PyTorch / transformers convention)."""


@dataclass
class ModernBertConfig:
    """Architecture, initialisation and runtime options of a ModernBERT encoder."""

    vocab_size: int = 50368
    """Rows of the token embedding (and the tied decoder); a multiple of 64 is fastest."""
    hidden_size: int = 768
    """Width of the residual stream."""
    intermediate_size: int = 1152
    """Width of the GeGLU MLP (Wi projects to twice this: input and gate)."""
    num_hidden_layers: int = 22
    """Number of encoder layers."""
    num_attention_heads: int = 12
    """Attention heads; hidden_size / heads is the head dim, which RoPE needs even."""
    max_position_embeddings: int = 8192
    """Longest document the model is meant for (RoPE itself has no table to overflow)."""
    global_attn_every_n_layers: int = 3
    """Layer i attends globally when i % n == 0 (layer 0 first), locally otherwise."""
    local_attention: int = 128
    """Sliding window of local layers, in tokens in total: each query sees
    local_attention // 2 tokens on each side (|i - j| <= local_attention // 2)."""
    global_rope_theta: float = 10000.0
    """RoPE base of global layers (raised to 160k for context extension)."""
    local_rope_theta: float = 10000.0
    """RoPE base of local layers."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""
    norm_bias: bool = False
    """Whether LayerNorms have a bias (ModernBERT: no)."""
    attention_bias: bool = False
    """Whether Wqkv and the attention Wo have biases."""
    mlp_bias: bool = False
    """Whether the MLP's Wi and Wo have biases."""
    decoder_bias: bool = True
    """Whether the MLM decoder (tied to the embeddings) has a bias."""
    classifier_bias: bool = False
    """Whether the MLM head's dense layer has a bias."""
    hidden_activation: str = "gelu"
    """Activation of the GeGLU MLP and the MLM head (transformers' ACT2FN names)."""
    embedding_dropout: float = 0.0
    """Dropout after the embedding norm."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities and after the attention output projection."""
    mlp_dropout: float = 0.0
    """Dropout on the GeGLU product before the MLP output projection."""
    initializer_range: float = 0.02
    """Std of the truncated-normal init of embeddings and input projections; output
    projections use initializer_range / sqrt(2 * num_hidden_layers) (Megatron style)."""
    initializer_cutoff_factor: float = 2.0
    """The init is truncated at +-cutoff_factor * std."""
    pad_token_id: int | None = 50283
    """Id of [PAD] (ModernBERT's public tokenizer). The special ids describe the tokenizer
    for export and training checks; the network never reads them, so None (unknown, e.g. a
    transformers config that lacks one) is allowed."""
    cls_token_id: int | None = 50281
    """Id of [CLS]."""
    sep_token_id: int | None = 50282
    """Id of [SEP]."""
    mask_token_id: int | None = 50284
    """Id of [MASK] (not a transformers field: stock configs leave it unset)."""
    attn_backend: str = "sdpa"
    """Attention kernel: 'sdpa' (CPU and GPU), 'flash_attn' (CUDA + flash-attn), 'flex'
    (flex_attention, compiled on CUDA; eager elsewhere, for tests) or 'auto' (flash_attn
    when installed and on CUDA, else flex on CUDA, else sdpa). All give the same result
    within float tolerance."""
    sparse_prediction: bool = True
    """With labels, run the MLM head only on labelled positions (saves the vocab matmul)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass to save memory."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def is_global_layer(self, layer_id: int) -> bool:
        """Whether layer `layer_id` attends globally (else within the local window)."""
        return layer_id % self.global_attn_every_n_layers == 0

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot work."""
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
            "global_attn_every_n_layers",
            "local_attention",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "global_rope_theta",
            "local_rope_theta",
            "norm_eps",
            "initializer_range",
            "initializer_cutoff_factor",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("embedding_dropout", "attention_dropout", "mlp_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        for name in (
            "norm_bias",
            "attention_bias",
            "mlp_bias",
            "decoder_bias",
            "classifier_bias",
            "sparse_prediction",
            "gradient_checkpointing",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"hidden_size / num_attention_heads = {self.head_dim} is odd; RoPE needs an even "
                "head dim (change hidden_size or num_attention_heads)"
            )
        if self.local_attention % 2:
            raise ValueError(
                f"local_attention={self.local_attention} must be even (half on each side)"
            )
        for name in CONFIG_ID_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer or null, got {value!r}")
            if value >= self.vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the vocabulary (size {self.vocab_size})"
                )
        if self.hidden_activation not in ACTIVATIONS:
            raise ValueError(
                f"hidden_activation={self.hidden_activation!r} is unknown; valid: "
                f"{', '.join(sorted(ACTIVATIONS))}"
            )
        if self.attn_backend not in BACKEND_NAMES:
            raise ValueError(
                f"attn_backend={self.attn_backend!r} is unknown; valid: {', '.join(BACKEND_NAMES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (YAML / JSON friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModernBertConfig:
        """Build from a dict, refusing unknown keys (a typo would silently keep a default)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = [f"{key!r}{did_you_mean(str(key), known)}" for key in unknown]
            raise ValueError(f"unknown ModernBertConfig key(s): {', '.join(hints)}")
        return cls(**values)
