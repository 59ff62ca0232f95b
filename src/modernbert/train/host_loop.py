"""Two steps of Composer's training loop redone from host values, for one rank.

Composer 0.32.1 asks the device for a number twice per step even when there is nothing to
agree on with other ranks: whether the dataloader is exhausted (a flag all-reduced and read
after every fetch) and the total weight of the step's microbatches (moved to the device,
all-reduced and read before the first forward). Each read is a sync: the host waits for
every queued kernel, so it cannot queue the next step while the device still runs this one.
On one rank both numbers are already on the host (the fetch either returned a batch or
raised StopIteration; the weights are counts from the batch's layout), so these versions
use them directly. They run the same events in the same order as Composer's, and
``MLMTrainer`` uses them only when the world size is 1; with several ranks Composer's
all-reduced versions stay, because the ranks must stop and weigh together. The third read,
the logged loss, is thinned on every world size (``loss_logged_after``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from composer import Trainer
from composer.core import Event
from composer.trainer.trainer import TrainerMode


def iterate_batches(trainer: Trainer, mode: TrainerMode) -> Iterator[Any]:
    """The dataloader's batches (at most ``dataloader_len``), with Composer's dataloader
    events around each fetch in training; ends at the loader's end, with no device flag."""
    state = trainer.state
    assert state.dataloader is not None, "the trainer sets its dataloader before iterating"
    batches: Iterator[Any] = iter(state.dataloader)
    if state.dataloader_len is not None:
        batches = itertools.islice(batches, int(state.dataloader_len))
    training = mode == TrainerMode.TRAIN
    while True:
        if training:
            trainer.engine.run_event(Event.BEFORE_DATALOADER)
        try:
            batch = next(batches)
        except StopIteration:
            if training:  # the train loop runs AFTER_DATALOADER only for a batch it got
                trainer.engine.run_marker_only_event(Event.AFTER_DATALOADER)
            return
        yield batch


def microbatch_weight(trainer: Trainer, microbatch: Any) -> int:
    """What one microbatch's loss is weighted by: its loss-generating (masked) tokens with
    ``accumulate_train_batch_on_tokens``, else its rows; the same measure Composer's
    ``_train_microbatch`` divides by the step's total."""
    spec = trainer._train_data_spec
    assert spec is not None, "the trainer sets its train data spec before training"
    if trainer.accumulate_train_batch_on_tokens:
        return int(spec.get_num_tokens_in_batch(microbatch, token_type="loss_generating"))
    return int(spec.get_num_samples_in_batch(microbatch))


def train_microbatches(
    trainer: Trainer, microbatches: Sequence[Any], total_loss_dict: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Forward + backward of every microbatch of the step, each loss weighted by its share
    of the step's total weight (summed on the host), the weighted losses added into
    ``total_loss_dict`` on the device; returns the step's total loss (never read here)."""
    state, engine = trainer.state, trainer.engine
    spec = trainer._train_data_spec
    assert spec is not None and state.scaler is not None
    engine.run_event(Event.BEFORE_TRAIN_BATCH)
    grad_scaling = trainer._use_grad_scaling(state.precision, state.scaler)
    for optimizer in state.optimizers:
        optimizer.zero_grad(set_to_none=True)
    total_weight = sum(microbatch_weight(trainer, part) for part in microbatches)
    whole_batch = state.batch  # state.batch holds each microbatch in turn, then the batch again
    for index, part in enumerate(microbatches):
        state.batch = spec.microbatch_transforms(state.device.batch_to_device(part))
        last = index + 1 == len(microbatches)
        for name, loss in trainer._train_microbatch(grad_scaling, total_weight, last).items():
            key = f"loss/train/{name}"
            if key not in total_loss_dict:
                total_loss_dict[key] = state.device.tensor_to_device(torch.zeros(1))
            total_loss_dict[key] += loss
    state.batch = whole_batch
    if grad_scaling:  # callbacks on AFTER_TRAIN_BATCH (clipping) see the true gradients
        for optimizer in state.optimizers:
            state.scaler.unscale_(optimizer)
    engine.run_event(Event.AFTER_TRAIN_BATCH)
    return total_loss_dict["loss/train/total"]


def loss_logged_after(steps_done: int, interval: int) -> bool:
    """Whether the step that brings the run to ``steps_done`` steps logs its loss: every
    ``interval``-th step, counted as the gradient norm's and the non-finite flag's intervals
    are, so with equal intervals all three reads fall on the same steps."""
    return steps_done % interval == 0
