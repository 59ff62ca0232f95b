"""Decide which checkpoint a run resumes, and read it safely before Composer does.

Composer reads checkpoints with ``torch.load(weights_only=False)``, which runs whatever code a
pickle names. So every checkpoint Composer is about to read (``load_path``, autoresume's
latest, ``init_from`` with ``reset_optimizer: false``) is first read here with the allowlisted
loader (``checkpoint.safe_torch_load``): a checkpoint holding anything but tensors and plain
values is refused before Composer sees it. The same read finds truncated or corrupt files
(autoresume then falls back to the newest intact checkpoint), a finished run (nothing to do),
and a checkpoint whose model shapes do not fit the recipe's model, each as a one-line error.

Sharded (FSDP) checkpoint folders are read by torch.distributed.checkpoint, which unpickles
its metadata; they are accepted only from this run's own save folder (autoresume), never
from ``load_path``/``init_from``, where a folder could come from anyone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from modernbert.errors import UserError
from modernbert.train.checkpoint import (
    COMPOSER_MODEL_PREFIX,
    CheckpointError,
    CorruptCheckpointError,
    find_checkpoint,
    safe_torch_load,
)
from modernbert.train.guards import checkpoints_by_batch
from modernbert.train.typed_yaml import parse_time

LATEST_CHECKPOINT = "latest-rank0.pt"  # Composer's link to the newest checkpoint of a folder
# Composer time units (recipe suffix) -> the key of a checkpoint's saved Timestamp
_TIMESTAMP_KEYS = {"ba": "batch", "tok": "token", "sp": "sample", "ep": "epoch"}


class RunComplete(UserError):
    """The run already reached max_duration; a rerun has nothing to do (exit status 0)."""

    exit_code = 0


@dataclass
class VerifiedCheckpoint:
    """A checkpoint read safely once: where it is and what it holds (None for a sharded
    folder, and after ``release``)."""

    path: Path
    contents: dict[str, Any] | None

    @property
    def sharded(self) -> bool:
        return self.path.is_dir()

    def release(self) -> None:
        """Drop the tensors read for checking (Composer reads the file again)."""
        self.contents = None


def _say(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, flush=True)


def verify_checkpoint(path: str | Path) -> VerifiedCheckpoint:
    """Read a monolithic checkpoint with the allowlisted loader, or raise CheckpointError.

    Unsafe content (pickled code) is refused; a truncated or corrupt file is named.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a sharded folder, whose metadata can only be read by "
            "unpickling it; only monolithic .pt checkpoints are loaded from load_path/init_from"
        )
    contents = safe_torch_load(path)  # refuses pickled code; names a damaged file
    if not isinstance(contents, dict) or not isinstance(contents.get("state"), dict):
        raise CorruptCheckpointError(f"{path} is not a Composer checkpoint (no 'state' section)")
    return VerifiedCheckpoint(path, contents)


def autoresume_checkpoint(save_folder: str | Path) -> VerifiedCheckpoint | None:
    """The newest intact checkpoint of a save folder: the ``latest`` link's target, else (when
    that is truncated or corrupt) the next newest that reads cleanly. None when the folder
    holds no checkpoint. Unsafe content is never skipped over: it stops the run."""
    folder = Path(save_folder)
    found = checkpoints_by_batch(folder)
    candidates: list[Path] = []
    latest = folder / LATEST_CHECKPOINT
    if latest.exists():
        candidates.append(latest.resolve())
    for batch in sorted(found, reverse=True):
        candidates += [p for p in found[batch] if p.name.endswith("-rank0.pt") or p.is_dir()]
    seen: set[Path] = set()
    skipped: list[str] = []
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        if path.is_dir():  # sharded: our own run's folder, read by Composer (see module doc)
            return VerifiedCheckpoint(path, None)
        try:
            checkpoint = verify_checkpoint(path)
        except CorruptCheckpointError as err:
            _say(f"autoresume: skipping {err}")
            skipped.append(path.name)
            continue
        if skipped:
            _say(f"autoresume: resuming from {path} (newest intact checkpoint)")
        return checkpoint
    if skipped:
        raise CheckpointError(
            f"autoresume: no intact checkpoint in {folder} ({', '.join(skipped)} are truncated "
            "or corrupt); remove them to start over"
        )
    return None


def trained_until(checkpoint: VerifiedCheckpoint, max_duration: str) -> tuple[int, int] | None:
    """(reached, target) in max_duration's unit when the checkpoint is at or past it."""
    if checkpoint.contents is None:
        return None
    target = parse_time(max_duration)
    key = _TIMESTAMP_KEYS.get(target.unit.value)
    stamp = checkpoint.contents["state"].get("timestamp", {})
    stamp = stamp.get("Timestamp", stamp)
    if key is None or key not in stamp:
        return None
    reached = int(stamp[key])
    return (reached, int(target.value)) if reached >= int(target.value) else None


def check_not_complete(checkpoint: VerifiedCheckpoint, max_duration: str, run_name: str) -> None:
    """Raise RunComplete when the checkpoint already reached ``max_duration``."""
    done = trained_until(checkpoint, max_duration)
    if done is not None:
        raise RunComplete(
            f"run {run_name} is complete: {checkpoint.path} is at {done[0]} of max_duration "
            f"{max_duration}; nothing to do (raise max_duration to train on)"
        )


def check_state_not_complete(state: Any, run_name: str) -> None:
    """Raise RunComplete when a built Trainer's restored time already reached max_duration.

    The same question as ``check_not_complete``, asked after Composer loaded the checkpoint:
    it also covers sharded checkpoints, whose time cannot be read before that.
    """
    limit = state.max_duration
    if limit is None:
        return
    reached = state.timestamp.get(limit.unit)
    if reached >= limit:
        raise RunComplete(
            f"run {run_name} is complete: it resumed at {reached.value}{limit.unit.value} of "
            f"max_duration {limit.value}{limit.unit.value}; nothing to do (raise max_duration "
            "to train on)"
        )


def check_model_fits(checkpoint: VerifiedCheckpoint, model: nn.Module) -> None:
    """The checkpoint's model tensors must have the names and shapes of ``model``'s (a
    ComposerModel, whose keys carry the ``model.`` prefix as the checkpoint's do)."""
    if checkpoint.contents is None:
        return
    saved = checkpoint.contents["state"].get("model") or {}
    own = model.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    wrong = [
        f"{k[len(COMPOSER_MODEL_PREFIX) :]} {tuple(saved[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(own.keys() & saved.keys())
        if hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{what}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for what, items in (("shapes", wrong), ("missing", missing), ("unexpected", unexpected))
            if items
        ]
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was saved by a different model than the recipe's "
            f"({'; '.join(parts)}); resume with the model settings it was trained with"
        )


def resume_checkpoint(
    load_path: str | None, autoresume: bool, save_folder: str | None
) -> VerifiedCheckpoint | None:
    """The checkpoint Composer will resume, verified: autoresume's newest intact one in the
    save folder, else ``load_path``; None for a fresh start."""
    if autoresume and save_folder:
        found = autoresume_checkpoint(save_folder)
        if found is not None:
            return found
    if load_path is None:
        return None
    if "://" in load_path:
        raise CheckpointError(
            f"load_path {load_path}: remote checkpoints cannot be checked before Composer "
            "unpickles them; copy it to a local file and give that path"
        )
    if not Path(load_path).expanduser().exists():
        raise FileNotFoundError(f"load_path: no checkpoint at {load_path}")
    return verify_checkpoint(find_checkpoint(load_path))


def refuse_stale_save_folder(save_folder: str | None, resuming: bool) -> None:
    """A fresh run must not write into a folder that holds another run's checkpoints
    (Composer would fail at the first save, or rotation would delete them)."""
    if resuming or not save_folder:
        return
    found = checkpoints_by_batch(save_folder)
    if found:
        names = sorted(p.name for paths in found.values() for p in paths)
        raise CheckpointError(
            f"save_folder {save_folder} already holds checkpoints ({', '.join(names[:3])}"
            f"{' ...' if len(names) > 3 else ''}); set autoresume: true to continue that run, "
            "or choose another save_folder"
        )
