"""ModernBERT encoder and masked-LM model on unpadded tokens.

Whatever the input layout (`[B, L]` rows or flat `[T]` + `cu_seqlens`, docs/interfaces.md
section 4), the encoder runs on the real tokens only, with varlen attention that keeps
documents apart; results go back to the caller's layout at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import resolve_backend
from .compile import compile_token_region
from .config import IGNORE_INDEX, ModernBertConfig
from .layers import (
    Attention,
    AttentionContext,
    Embeddings,
    EncoderLayer,
    PredictionHead,
    layer_norm,
)
from .loss import LOSS_CHUNK_ROWS, chunked_cross_entropy, cross_entropy_sum, labelled_count
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

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype the layers compute in: autocast's when it is on, else the weights'."""
        if torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.embeddings.tok_embeddings.weight.dtype

    def encode(self, input_ids: torch.Tensor, varlen: Varlen) -> torch.Tensor:
        """Final hidden states `[T, hidden]` of flat tokens `[T]` laid out as `varlen` says."""
        device = input_ids.device
        backend = resolve_backend(self.config.attn_backend, device)
        ctx = AttentionContext(varlen, backend, self.config.head_dim, self.compute_dtype(device))
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
        seqlens_host: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states in the input's layout: `[B, L, hidden]` (zeros on padding) or
        `[T, hidden]`."""
        flat_ids, varlen = to_varlen(
            input_ids, attention_mask, position_ids, cu_seqlens, max_seqlen, seqlens_host
        )
        return varlen.repad(self.encode(flat_ids, varlen))


@dataclass
class MaskedLMOutput:
    """`loss`: mean cross-entropy over labelled positions (None without labels).
    `logits`: `[N, vocab]` on the labelled positions with sparse prediction, else the
    input's shape plus vocab; None when a training step with `masked_positions` computed
    the loss chunk by chunk. `labels`: the targets matching `logits` row for row."""

    loss: torch.Tensor | None
    logits: torch.Tensor | None
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
        self.loss_chunk_rows = LOSS_CHUNK_ROWS
        """Masked tokens per chunk of the training loss (see model/loss.py)."""
        self.compiled_head_loss: Callable | None = None
        """`head_loss_sum` compiled by `compile_regions`; None runs eager."""
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
        seqlens_host: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
        masked_labels: torch.Tensor | None = None,
    ) -> MaskedLMOutput:
        """Masked-LM outputs for `[B, L]` rows or flat `[T]` tokens (docs/interfaces.md
        section 4). The training fast path is flat tokens with `seqlens_host` (the document
        lengths on the CPU) and `masked_positions [N]` / `masked_labels [N]` (the MLM
        targets): it never reads the device, and in training it returns the loss without
        logits. `labels` (one per input token, -100 where none) is the older form."""
        sparse = masked_positions is not None or masked_labels is not None
        if sparse:
            _check_masked(input_ids, labels, masked_positions, masked_labels)
        flat_ids, varlen = to_varlen(
            input_ids, attention_mask, position_ids, cu_seqlens, max_seqlen, seqlens_host
        )
        hidden = self.model.encode(flat_ids, varlen)
        if sparse:
            return self._masked_output(hidden.index_select(0, masked_positions), masked_labels)
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

    def _masked_output(self, selected: torch.Tensor, targets: torch.Tensor) -> MaskedLMOutput:
        """Training: the chunked loss only. Eval (or no grad): logits for the metrics too."""
        if self.training and torch.is_grad_enabled():
            region = self.compiled_head_loss or self.head_loss_sum
            loss = chunked_cross_entropy(region, selected, targets, self.loss_chunk_rows)
            return MaskedLMOutput(loss, None, targets)
        logits = self._logits(selected)
        return MaskedLMOutput(self._loss(logits, targets), logits, targets)

    def head_loss_sum(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed fp32 cross-entropy of the head + decoder on `hidden` rows: one loss chunk,
        and the region `compile_regions` compiles for the head + loss."""
        return cross_entropy_sum(self._logits(hidden), targets)

    def compile_regions(self, **compile_kwargs: Any) -> ModernBertForMaskedLM:
        """`torch.compile` each encoder layer's pre- and post-attention code and the head +
        loss chunk, with the token dimension dynamic (`compile_kwargs` go to torch.compile).

        The attention call stays eager between the regions: its plan objects change with
        every batch and would otherwise cost a graph break or a recompile per batch (flex
        compiles its own kernel). Layers share compiled code, so a region compiles about
        once for the whole model. Returns the model."""
        for layer in self.model.layers:
            layer.compiled_regions = (
                compile_token_region(layer.pre_attention, **compile_kwargs),
                compile_token_region(layer.post_attention, **compile_kwargs),
            )
        self.compiled_head_loss = compile_token_region(self.head_loss_sum, **compile_kwargs)
        return self

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.head(hidden))

    @staticmethod
    def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labelled rows; 0 (not NaN) when a batch has none."""
        return cross_entropy_sum(logits, targets) / labelled_count(targets)


def _check_masked(
    input_ids: torch.Tensor,
    labels: torch.Tensor | None,
    positions: torch.Tensor | None,
    targets: torch.Tensor | None,
) -> None:
    """Shape checks of the sparse-target inputs (shapes only: nothing read from the device)."""
    if positions is None or targets is None:
        raise ValueError("masked_positions and masked_labels go together: pass both or neither")
    if labels is not None:
        raise ValueError("pass either labels or masked_positions/masked_labels, not both")
    if input_ids.dim() != 1:
        raise ValueError(
            f"masked_positions index flat [T] input_ids, got shape {tuple(input_ids.shape)}"
        )
    if positions.dim() != 1 or tuple(positions.shape) != tuple(targets.shape):
        raise ValueError(
            f"masked_positions {tuple(positions.shape)} and masked_labels "
            f"{tuple(targets.shape)} must both be [N]"
        )
    if positions.dtype != torch.long or targets.dtype != torch.long:
        raise ValueError(
            f"masked_positions and masked_labels must be int64, got {positions.dtype} "
            f"and {targets.dtype}"
        )
