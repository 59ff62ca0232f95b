"""ModernBERT encoder and masked-LM model on unpadded tokens.

Whatever the input layout (`[B, L]` rows or flat `[T]` + `cu_seqlens`, docs/interfaces.md
section 4), the encoder runs on the real tokens only, with varlen attention that keeps
documents apart; results go back to the caller's layout at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import resolve_backend
from .config import IGNORE_INDEX, ModernBertConfig
from .layers import (
    Attention,
    AttentionContext,
    Embeddings,
    EncoderLayer,
    PredictionHead,
    layer_norm,
)
from .varlen import Varlen, to_varlen


def _trunc_normal_(weight: torch.Tensor, std: float, cutoff_factor: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-cutoff_factor * std, b=cutoff_factor * std)


def _init_stds(config: ModernBertConfig) -> tuple[float, float, float]:
    """(std of input projections, std of residual-stream outputs, cutoff factor)."""
    std_out = config.initializer_range / math.sqrt(2.0 * config.num_hidden_layers)
    return config.initializer_range, std_out, config.initializer_cutoff_factor


@torch.no_grad()
def _reset_norms_and_biases(module: nn.Module) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Linear) and sub.bias is not None:
            nn.init.zeros_(sub.bias)


class ModernBertModel(nn.Module):
    """The bare encoder: embeddings, layers, final norm. Returns hidden states."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(
            EncoderLayer(config, layer_id) for layer_id in range(config.num_hidden_layers)
        )
        self.final_norm = layer_norm(config)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Megatron-style truncated-normal init: `initializer_range` for embeddings and
        input projections, divided by sqrt(2 * layers) for projections that write into
        the residual stream (so its variance does not grow with depth)."""
        std_in, std_out, cut = _init_stds(self.config)
        _reset_norms_and_biases(self)
        _trunc_normal_(self.embeddings.tok_embeddings.weight, std_in, cut)
        for layer in self.layers:
            attn: Attention = layer.attn
            _trunc_normal_(attn.Wqkv.weight, std_in, cut)
            _trunc_normal_(attn.Wo.weight, std_out, cut)
            _trunc_normal_(layer.mlp.Wi.weight, std_in, cut)
            _trunc_normal_(layer.mlp.Wo.weight, std_out, cut)

    def encode(self, input_ids: torch.Tensor, varlen: Varlen) -> torch.Tensor:
        """Final hidden states `[T, hidden]` of flat tokens `[T]` laid out as `varlen` says."""
        backend = resolve_backend(self.config.attn_backend, input_ids.device)
        ctx = AttentionContext(varlen, backend, self.config.head_dim)
        hidden = self.embeddings(input_ids)
        recompute = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                hidden = checkpoint(layer, hidden, ctx, use_reentrant=False)
            else:
                hidden = layer(hidden, ctx)
        return self.final_norm(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
    ) -> torch.Tensor:
        """Hidden states in the input's layout: `[B, L, hidden]` (zeros on padding) or
        `[T, hidden]`."""
        flat_ids, varlen = to_varlen(
            input_ids, attention_mask, position_ids, cu_seqlens, max_seqlen
        )
        return varlen.repad(self.encode(flat_ids, varlen))


@dataclass
class MaskedLMOutput:
    """`loss`: mean cross-entropy over labelled positions (None without labels).
    `logits`: `[N, vocab]` on the labelled positions with sparse prediction, else the
    input's shape plus vocab. `labels`: the targets matching `logits` row for row."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    labels: torch.Tensor | None


class ModernBertForMaskedLM(nn.Module):
    """Encoder + MLM head + decoder tied to the token embeddings."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.config = config
        self.model = ModernBertModel(config)
        self.head = PredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.decoder.weight = self.model.embeddings.tok_embeddings.weight
        self.reset_parameters(encoder=False)

    @torch.no_grad()
    def reset_parameters(self, encoder: bool = True) -> None:
        """Re-initialise (the encoder too unless `encoder=False`); the head's dense layer
        writes into the residual scale and uses the output std, as in ModernBERT."""
        if encoder:
            self.model.reset_parameters()
        _, std_out, cut = _init_stds(self.config)
        _reset_norms_and_biases(self.head)
        if self.decoder.bias is not None:
            nn.init.zeros_(self.decoder.bias)
        _trunc_normal_(self.head.dense.weight, std_out, cut)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        labels: torch.Tensor | None = None,
    ) -> MaskedLMOutput:
        flat_ids, varlen = to_varlen(
            input_ids, attention_mask, position_ids, cu_seqlens, max_seqlen
        )
        hidden = self.model.encode(flat_ids, varlen)
        if labels is None:
            return MaskedLMOutput(None, varlen.repad(self._logits(hidden)), None)
        if tuple(labels.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"labels shape {tuple(labels.shape)} does not match input_ids {tuple(input_ids.shape)}"
            )
        flat_labels = varlen.unpad(labels)
        if self.config.sparse_prediction:
            keep = flat_labels != IGNORE_INDEX
            logits = self._logits(hidden[keep])
            targets = flat_labels[keep]
            return MaskedLMOutput(self._loss(logits, targets), logits, targets)
        logits = self._logits(hidden)
        loss = self._loss(logits, flat_labels)
        return MaskedLMOutput(loss, varlen.repad(logits), labels)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.head(hidden))

    @staticmethod
    def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labelled rows; 0 (not NaN) when a batch has none."""
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32
        total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        count = (targets != IGNORE_INDEX).sum().clamp(min=1)
        return total / count
