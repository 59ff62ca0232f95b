"""One fine-tuning run: a sequence classification/regression head on the exported encoder,
AdamW with a linear warmup and decay, evaluated on the task's dev split(s) after each epoch.

The head and its loss are transformers' `ModernBertForSequenceClassification` (cross-entropy
for classes, MSE for regression); a run that starts from another task's checkpoint (MNLI)
keeps its encoder and head body and gets a fresh classifier sized for this task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from modernbert.eval.metrics import compute
from modernbert.eval.tasks import TaskSpec

WARMUP_FRACTION = 0.06  # of the run's steps, linear (the usual GLUE fine-tuning schedule)
MAX_GRAD_NORM = 1.0
LOG_EVERY = 20  # optimizer steps between training-loss records

Log = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunSpec:
    """What one run trains: task, starting point, learning rate, seed and budget."""

    task: TaskSpec
    init: Path  # the exported model, or a fine-tuned checkpoint to continue from (MNLI)
    lr: float
    seed: int
    epochs: int
    batch_size: int


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)


def load_classifier(task: TaskSpec, init: Path, from_other_task: bool) -> Any:
    """The encoder (and head body) of `init` with a fresh classifier for `task`."""
    from transformers import ModernBertForSequenceClassification
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # "newly initialized: classifier" is the point, not news
    try:
        return ModernBertForSequenceClassification.from_pretrained(
            init,
            num_labels=task.num_labels,
            problem_type="regression" if task.regression else "single_label_classification",
            ignore_mismatched_sizes=from_other_task,  # MNLI's 3-way classifier -> this task's
        )
    finally:
        logging.set_verbosity(level)


def _batches(loader: DataLoader, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, labels], labels [N]) over a whole split, in order."""
    model.eval()
    logits, labels = [], []
    for batch in _batches(loader, device):
        target = batch.pop("labels")
        with _autocast(device):
            logits.append(model(**batch).logits.float().cpu())
        labels.append(target.cpu())
    model.train()
    return torch.cat(logits), torch.cat(labels)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def finetune(
    spec: RunSpec,
    train: Any,
    evals: dict[str, Any],
    collate: Any,
    device: torch.device,
    log: Log,
    on_step: Callable[[], None],
    from_other_task: bool = False,
) -> tuple[Any, dict[str, dict[str, float]]]:
    """Train one run; returns (model, {split: {metric: value}} of the last epoch)."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    set_seed(spec.seed)
    model = load_classifier(spec.task, spec.init, from_other_task).to(device).train()
    generator = torch.Generator().manual_seed(spec.seed)
    loader = DataLoader(
        train, batch_size=spec.batch_size, shuffle=True, collate_fn=collate, generator=generator
    )
    eval_loaders = {
        name: DataLoader(split, batch_size=2 * spec.batch_size, collate_fn=collate)
        for name, split in evals.items()
    }
    total = spec.epochs * len(loader)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": spec.task.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=spec.lr,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP_FRACTION * total), total)
    where = {"task": spec.task.name, "lr": spec.lr, "seed": spec.seed}
    step, results = 0, {}
    for epoch in range(1, spec.epochs + 1):
        for batch in _batches(loader, device):
            with _autocast(device):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            on_step()
            if step % LOG_EVERY == 0 or step == total:
                log(
                    {
                        **where,
                        "step": step,
                        "train/loss": float(loss),
                        "lr_now": schedule.get_last_lr()[0],
                    }
                )
        results = {}
        for name, eval_loader in eval_loaders.items():
            logits, labels = predict(model, eval_loader, device)
            results[name] = compute(spec.task.metrics, logits, labels, spec.task.num_labels)
            log({**where, "step": step, "epoch": epoch, "split": name,
                 **{f"eval/{k}": v for k, v in results[name].items()}})  # fmt: skip
    return model, results
