"""The Composer face of the bare model: batch dict in, sparse MLM loss and metrics out.

Hugging Face free: it wraps ``modernbert.model.ModernBertForMaskedLM`` directly. The loader's
flat batches (data/flat.py) reach the model as exactly its fast-path keyword arguments, so a
training step reads nothing back from the device. Metrics are computed on masked positions
only, without device syncs, from the eval forward's ``[N, vocab]`` logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from composer.models import ComposerModel
from torch import nn
from torchmetrics import Metric

from modernbert.data.flat import LAYOUT_KEY, model_inputs
from modernbert.model.config import IGNORE_INDEX
from modernbert.model.layers import EncoderLayer

# The `[B, L]` form (padded rows, e.g. hand-made batches); loader batches are flat.
PADDED_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


class MaskedAccuracy(Metric):
    """Top-1 accuracy over the positions chosen for MLM."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        keep = labels != IGNORE_INDEX  # counted with masks, not indexed: no device sync
        self.correct += ((logits.argmax(-1) == labels) & keep).sum().float()
        self.total += keep.sum().float()

    def compute(self) -> torch.Tensor:
        return self.correct / self.total.clamp(min=1)


class MaskedCrossEntropy(Metric):
    """Mean cross-entropy over the positions chosen for MLM (token-weighted across batches)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_loss", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.sum_loss += F.cross_entropy(
            logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum"
        ).detach()
        self.total += (labels != IGNORE_INDEX).sum().float()

    def compute(self) -> torch.Tensor:
        return self.sum_loss / self.total.clamp(min=1)


METRICS: dict[str, type[Metric]] = {
    "MaskedAccuracy": MaskedAccuracy,
    "MaskedCrossEntropy": MaskedCrossEntropy,
}


class ComposerMLM(ComposerModel):
    """ComposerModel around a bare masked-LM (the model is ``self.model``).

    The checkpoint key prefix ``model.`` that this attribute name creates is relied on by
    ``checkpoint.COMPOSER_MODEL_PREFIX``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # Composer's FSDP wraps `self.model` and asks it which submodules become their own
        # FSDP unit / activation-checkpointing unit: one per encoder layer. The embeddings and
        # the decoder tied to them stay together in the root unit.
        model.fsdp_wrap_fn = _is_encoder_layer
        model.activation_checkpointing_fn = _is_encoder_layer
        # No training metrics: the training forward computes its loss chunk by chunk without
        # logits (and metrics would cost a device read per step); the loss is logged anyway.
        self.train_metrics: dict[str, Metric] = {}
        self.eval_metrics = {name: cls() for name, cls in METRICS.items()}

    def forward(self, batch: dict[str, Any]) -> Any:
        if LAYOUT_KEY in batch:
            return self.model(**model_inputs(batch))
        missing = [k for k in ("input_ids", "labels") if k not in batch]
        if missing:
            raise ValueError(f"batch lacks {missing}; got keys {sorted(batch)}")
        return self.model(**{k: batch[k] for k in PADDED_INPUT_KEYS if k in batch})

    def loss(self, outputs: Any, batch: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if outputs.loss is None:
            raise ValueError("the model returned no loss: the batch must carry labels")
        return outputs.loss

    def eval_forward(self, batch: dict[str, Any], outputs: Any | None = None) -> Any:
        return outputs if outputs is not None else self.forward(batch)

    def update_metric(self, batch: dict[str, Any], outputs: Any, metric: Metric) -> None:
        logits, labels = masked_logits_and_labels(outputs, batch)
        metric.update(logits.detach(), labels)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.eval_metrics


def _is_encoder_layer(module: nn.Module) -> bool:
    return isinstance(module, EncoderLayer)


def masked_logits_and_labels(
    outputs: Any, batch: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, vocab]`` logits and ``[N]`` labels whatever the head returned.

    With sparse prediction the model returns the masked rows and their labels; otherwise
    logits cover every position and are flattened against the batch labels.
    """
    logits = outputs.logits
    if logits is None:
        raise ValueError(
            "the model returned no logits (a training forward computes its loss chunk by chunk "
            "without them): metrics need an eval forward"
        )
    labels = getattr(outputs, "labels", None)
    if labels is None or labels.shape[0] != logits.shape[0]:
        labels = batch["labels"]
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits rows ({logits.shape[0]}) do not match labels ({labels.shape[0]})")
    return logits, labels
