"""The Composer face of the bare model: batch dict in, sparse MLM loss and metrics out.

Hugging Face free: it wraps ``modernbert.model.ModernBertForMaskedLM`` directly. Metrics are
computed on masked positions only (labels != -100) and reuse the training forward's outputs,
so train metrics cost no second forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from composer.models import ComposerModel
from torch import nn
from torchmetrics import Metric

from modernbert.model.layers import EncoderLayer

IGNORE_INDEX = -100
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


class MaskedAccuracy(Metric):
    """Top-1 accuracy over the positions chosen for MLM."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        keep = labels != IGNORE_INDEX
        self.correct += (logits.argmax(-1)[keep] == labels[keep]).sum().float()
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
        keep = labels != IGNORE_INDEX
        if keep.any():
            self.sum_loss += F.cross_entropy(
                logits[keep].float(), labels[keep], reduction="sum"
            ).detach()
        self.total += keep.sum().float()

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
        self.train_metrics = {name: cls() for name, cls in METRICS.items()}
        self.eval_metrics = {name: cls() for name, cls in METRICS.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        missing = [k for k in ("input_ids", "labels") if k not in batch]
        if missing:
            raise ValueError(f"batch lacks {missing}; got keys {sorted(batch)}")
        return self.model(**{k: batch[k] for k in MODEL_INPUT_KEYS if k in batch})

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        if outputs.loss is None:
            raise ValueError("the model returned no loss: the batch must carry labels")
        return outputs.loss

    def eval_forward(self, batch: dict[str, torch.Tensor], outputs: Any | None = None) -> Any:
        return outputs if outputs is not None else self.forward(batch)

    def update_metric(self, batch: dict[str, torch.Tensor], outputs: Any, metric: Metric) -> None:
        logits, labels = masked_logits_and_labels(outputs, batch)
        metric.update(logits.detach(), labels)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.eval_metrics


def _is_encoder_layer(module: nn.Module) -> bool:
    return isinstance(module, EncoderLayer)


def masked_logits_and_labels(
    outputs: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, vocab]`` logits and ``[N]`` labels whatever the head returned.

    With sparse prediction the model already returns the masked rows and their labels;
    otherwise logits cover every position and are flattened against the batch labels.
    """
    logits = outputs.logits
    labels = getattr(outputs, "labels", None)
    if labels is None or labels.shape[0] != logits.shape[0]:
        labels = batch["labels"]
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits rows ({logits.shape[0]}) do not match labels ({labels.shape[0]})")
    return logits, labels
