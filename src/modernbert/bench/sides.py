"""The two contestants: our ModernBertForMaskedLM and transformers' with the same weights.

A `Side` is a model, its optimizer and the batches in the layout it is fed; `run_step`
performs one training step (forward, backward, AdamW step) or one no-grad forward.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..hf.model_mapping import to_hf
from ..model import ModernBertConfig, ModernBertForMaskedLM
from .batches import LABEL_KEYS

OURS_LOSS = "sparse prediction: MLM head and cross-entropy on the masked positions only"
HF_DENSE_LOSS = (
    "transformers default (sparse_prediction=False): MLM head on every position of the "
    "padded batch, cross-entropy ignoring label -100"
)
HF_SPARSE_LOSS = "transformers with sparse_prediction=True: MLM head on the masked positions"


@dataclass
class Side:
    """One model under test and everything its steps need."""

    name: str
    model: nn.Module
    batches: list[dict[str, torch.Tensor]]
    loss_method: str
    attn: str
    optimizer: torch.optim.Optimizer | None = None
    first_loss: float | None = field(default=None)


def build_ours(config: ModernBertConfig, seed: int, device: torch.device) -> ModernBertForMaskedLM:
    """Our model, initialised from `seed` (the weights every side starts from)."""
    torch.manual_seed(seed)
    return ModernBertForMaskedLM(config).to(device)


def ours_with_backend(reference: ModernBertForMaskedLM, backend: str) -> ModernBertForMaskedLM:
    """A copy of `reference` (same weights) that runs attention with `backend`."""
    model = copy.deepcopy(reference)  # the copy's model and encoder share one new config
    model.config.attn_backend = backend
    model.config.validate()
    return model


def build_theirs(
    reference: ModernBertForMaskedLM, sparse_prediction: bool, compile_: bool
) -> nn.Module:
    """transformers' ModernBertForMaskedLM (sdpa) with `reference`'s weights."""
    model = to_hf(reference, attn_implementation="sdpa")
    model.config.sparse_prediction = sparse_prediction
    model.sparse_prediction = sparse_prediction
    # None lets transformers decide (compiles on CUDA when triton is present); False: eager.
    model.config.reference_compile = None if compile_ else False
    return model


def autocast_context(device: torch.device, dtype: str | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def prepare(side: Side, phase: str, lr: float) -> None:
    """Train mode with a fresh AdamW, or eval mode for inference."""
    if phase == "train":
        side.model.train()
        side.optimizer = torch.optim.AdamW(side.model.parameters(), lr=lr, weight_decay=1e-5)
    elif phase == "inference":
        side.model.eval()
        side.optimizer = None
    else:
        raise ValueError(f"phase must be 'train' or 'inference', got {phase!r}")


def _forward(model: nn.Module, batch: dict, with_labels: bool):
    inputs = {k: v for k, v in batch.items() if with_labels or k not in LABEL_KEYS}
    return model(**inputs)


def run_step(
    side: Side, index: int, phase: str, device: torch.device, autocast_dtype: str | None
) -> None:
    """One step on batch `index` (cycled); records the first training loss of the side."""
    batch = side.batches[index % len(side.batches)]
    if phase == "inference":
        with torch.no_grad(), autocast_context(device, autocast_dtype):
            _forward(side.model, batch, with_labels=False)
        return
    with autocast_context(device, autocast_dtype):
        loss = _forward(side.model, batch, with_labels=True).loss
    loss.backward()
    side.optimizer.step()
    side.optimizer.zero_grad(set_to_none=True)
    if side.first_loss is None:
        side.first_loss = float(loss.detach())


def state_bytes(side: Side) -> int:
    """Bytes of the side's own parameters and optimizer state (grads are freed each step)."""
    seen: set[int] = set()
    total = 0
    tensors = list(side.model.parameters())
    if side.optimizer is not None:
        for state in side.optimizer.state.values():
            tensors.extend(t for t in state.values() if torch.is_tensor(t))
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total
