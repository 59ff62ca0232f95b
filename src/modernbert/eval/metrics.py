"""Each task's official metric, computed by torchmetrics (a maintained library that Composer
already brings; scikit-learn and scipy are not in the pinned stack). Nothing is
re-implemented here: each entry only adapts predictions to the library's call."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchmetrics.functional import (
    accuracy,
    f1_score,
    matthews_corrcoef,
    pearson_corrcoef,
    spearman_corrcoef,
)

Metric = Callable[[torch.Tensor, torch.Tensor, int], float]


def _classes(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    return float(accuracy(_classes(logits), labels, task="multiclass", num_classes=num_labels))


def _f1(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    # GLUE's F1 (MRPC, QQP) is the binary F1 of the positive class
    return float(f1_score(_classes(logits), labels, task="binary"))


def _matthews(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    return float(
        matthews_corrcoef(_classes(logits), labels, task="multiclass", num_classes=num_labels)
    )


def _pearson(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    return float(pearson_corrcoef(logits.reshape(-1).double(), labels.double()))


def _spearman(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    return float(spearman_corrcoef(logits.reshape(-1).double(), labels.double()))


METRICS: dict[str, Metric] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews": _matthews,
    "pearson": _pearson,
    "spearman": _spearman,
}


def compute(
    names: tuple[str, ...], logits: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> dict[str, float]:
    """{metric: value} for predictions `logits` [N, num_labels] against `labels` [N]."""
    return {name: METRICS[name](logits.float(), labels, num_labels) for name in names}
