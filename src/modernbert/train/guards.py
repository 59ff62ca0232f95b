"""Run guards: stop a diverged run before it checkpoints, one run per save folder, bounded
checkpoint rotation across restarts, and a train split that can fill one batch.

The non-finite guard keeps the training step free of device syncs: each microbatch folds
"is this loss finite" into a device-side "first non-finite step" (a min over steps, never
read back), and the flag is read only every ``check_interval`` batches and right before any
checkpoint is written, so a checkpoint of NaN weights never replaces a finite one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from composer.callbacks import CheckpointSaver
from composer.core import Callback, Event, State
from composer.loggers import Logger
from composer.utils import dist

from modernbert.errors import DataError, UserError

NEVER = 2**62  # "no non-finite step yet" in the device-side flag
LOCK_FILE = ".lock"
# Composer's checkpoint names: ep{epoch}-ba{batch}-rank{rank}.pt files or sharded ep*-ba*/ folders
CHECKPOINT_NAME = re.compile(r"^ep(\d+)-ba(\d+)(-rank\d+\.pt)?$")


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss (or weights); the run stops."""


class SaveFolderInUseError(UserError):
    """Another live run holds the save folder."""


class NonFiniteGuard(Callback):
    """Remembers, on the device, the first step whose loss was not finite; stops the run with
    NonFiniteLossError when that flag is read (every ``check_interval`` batches, and before
    every checkpoint, where the weights themselves are checked too)."""

    def __init__(self, check_interval: int, save_folder: str | None = None) -> None:
        if check_interval < 1:
            raise ValueError(f"nonfinite_check_interval must be >= 1, got {check_interval}")
        self.check_interval = check_interval
        self.save_folder = save_folder
        self._first_bad: torch.Tensor | None = None

    def after_loss(self, state: State, logger: Logger) -> None:
        step = int(state.timestamp.batch)  # the step in progress, as the metrics number it
        for loss in _tensors(state.loss):
            bad = ~torch.isfinite(loss.detach()).all()
            candidate = torch.where(bad, step, NEVER)
            if self._first_bad is None:
                self._first_bad = candidate
            else:
                self._first_bad = torch.minimum(self._first_bad, candidate)

    def batch_end(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) % self.check_interval == 0:
            self.check(state)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.check(state)  # a diverged run never ends with exit status 0

    def check(self, state: State, weights: bool = False) -> None:
        """Read the flag (one sync, all ranks); raise if any rank saw a non-finite loss, or,
        with ``weights``, holds a non-finite parameter."""
        device = state.device.tensor_to_device(torch.zeros(1)).device
        first = self._first_bad if self._first_bad is not None else torch.tensor(NEVER)
        flags = torch.stack([first.to(device).reshape(()), torch.tensor(NEVER, device=device)])
        if weights:
            flags[1] = torch.where(_weights_finite(state.model).to(device), NEVER, 0)
        dist.all_reduce(flags, reduce_operation="MIN")
        first_bad, weights_ok = (int(v) for v in flags.tolist())
        now = int(state.timestamp.batch)
        where = f" (the checkpoints in {self.save_folder} hold finite weights)" * bool(
            self.save_folder
        )
        if first_bad != NEVER:
            raise NonFiniteLossError(
                f"training diverged: the loss is not finite from step {first_bad} on; stopped "
                f"after {now} steps, before writing any checkpoint of them{where}. Lower the "
                "learning rate or check the data, then resume from the last checkpoint"
            )
        if weights_ok != NEVER:
            raise NonFiniteLossError(
                f"training diverged: model weights are not finite after {now} steps; stopped "
                f"before writing a checkpoint{where}"
            )

    def guard_saves(self, saver: Callback) -> None:
        """Wrap a CheckpointSaver's interval so the flag and weights are checked right before
        each checkpoint it decides to write (the only extra syncs besides the interval)."""
        decide: Callable[[State, Event], bool] = saver.save_interval  # type: ignore[attr-defined]

        def checked(state: State, event: Event) -> bool:
            due = decide(state, event)
            if due:
                self.check(state, weights=True)
            return due

        saver.save_interval = checked  # type: ignore[attr-defined]


def _tensors(loss: Any) -> list[torch.Tensor]:
    if isinstance(loss, torch.Tensor):
        return [loss]
    if isinstance(loss, dict):
        return [v for v in loss.values() if isinstance(v, torch.Tensor)]
    if isinstance(loss, (list, tuple)):
        return [v for v in loss if isinstance(v, torch.Tensor)]
    return []


def _weights_finite(model: torch.nn.Module) -> torch.Tensor:
    """Whether every parameter this rank holds (its shard, under FSDP) is finite."""
    checks = []
    for param in model.parameters():
        local = param.to_local() if hasattr(param, "to_local") else param
        if local.numel():
            checks.append(torch.isfinite(local.detach()).all())
    return torch.stack(checks).all() if checks else torch.tensor(True)


class DiskFullError(UserError):
    """A write failed for lack of space."""


def _name_full_disk(save: Callable[..., Any], folder: str) -> Callable[..., Any]:
    """Wrap a checkpoint write so that a full disk names the folder it was writing into
    (torch.save reports ENOSPC without a file name)."""

    def saving(*args: Any, **kwargs: Any) -> Any:
        try:
            return save(*args, **kwargs)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise DiskFullError(
                f"no space left on device writing {err.filename or f'a checkpoint into {folder}'}"
            ) from None

    return saving


def install_save_guards(trainer: Any, check_interval: int, keep: int) -> NonFiniteGuard:
    """Attach the run guards to a built Trainer: the non-finite guard (checked before every
    checkpoint Composer's saver writes), a full disk named, and rotation across restarts."""
    savers = [cb for cb in trainer.state.callbacks if isinstance(cb, CheckpointSaver)]
    folder = savers[0].folder if savers else None
    guard = NonFiniteGuard(check_interval, folder)
    trainer.state.callbacks.append(guard)
    for saver in savers:
        guard.guard_saves(saver)
        saver._save_checkpoint = _name_full_disk(saver._save_checkpoint, saver.folder)
        if keep > 0:
            trainer.state.callbacks.append(KeepNewestCheckpoints(saver.folder, keep))
    return guard


# ----------------------------------------------------------------------------- folder lock


class SaveFolderLock:
    """An exclusive ``flock`` on ``FOLDER/.lock`` for the life of the run.

    The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
    crashed run never leaves the folder stuck; the file itself stays and only says who held it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._file: Any = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SaveFolderInUseError(
                f"save_folder {self.folder} is in use by a running run ({holder}); wait for it "
                "to finish or choose another save_folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_save_folder(save_folder: str | None) -> SaveFolderLock | None:
    """Global rank 0 locks the save folder before anything else is built (None: no folder,
    or another rank: the folder is shared, one lock per run is enough)."""
    if not save_folder or int(os.environ.get("RANK", "0")) != 0:
        return None
    lock = SaveFolderLock(save_folder)
    lock.acquire()
    return lock


# ----------------------------------------------------------------------------- rotation


def checkpoints_by_batch(folder: str | Path) -> dict[int, list[Path]]:
    """Composer checkpoints in ``folder`` (files of every rank, sharded folders) by batch."""
    found: dict[int, list[Path]] = {}
    root = Path(folder)
    if not root.is_dir():
        return found
    for path in root.iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match and not path.is_symlink():
            found.setdefault(int(match.group(2)), []).append(path)
    return found


class KeepNewestCheckpoints(Callback):
    """Keeps the newest ``keep`` checkpoints in the save folder, whoever wrote them.

    Composer's own rotation only knows the checkpoints this process saved, so every restart
    left the earlier run's checkpoints behind for good. This runs after Composer's saver and
    prunes by batch number, never the one the ``latest`` link points at.
    """

    def __init__(self, folder: str, keep: int) -> None:
        self.folder = folder
        self.keep = keep
        self._pruned_at: int | None = None

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        self._prune(state)

    def epoch_checkpoint(self, state: State, logger: Logger) -> None:
        self._prune(state)

    def _prune(self, state: State) -> None:
        now = int(state.timestamp.batch)
        if self.keep < 1 or self._pruned_at == now or dist.get_global_rank() != 0:
            return
        self._pruned_at = now
        prune_checkpoints(self.folder, self.keep)


def prune_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints in ``folder``; returns what was removed."""
    found = checkpoints_by_batch(folder)
    protected = {p.resolve() for p in Path(folder).glob("latest-rank*.pt") if p.exists()}
    removed = []
    for batch in sorted(found)[:-keep]:
        for path in found[batch]:
            if path.resolve() in protected:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------- data


def check_enough_rows(loader: Any, global_batch_size: int) -> None:
    """A train split must fill at least one global batch: with none, every epoch is empty and
    the run would spin through empty epochs forever."""
    dataset = loader.dataset
    if len(dataset) == 0:
        raise DataError(
            f"the train split packs into {dataset.rows_in_epoch()} rows of "
            f"{dataset.max_seq_len} tokens, fewer than one global batch of {global_batch_size} "
            "rows: add data or lower global_train_batch_size"
        )
