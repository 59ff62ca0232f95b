"""A small on-disk index of an epoch's packing: the rows of every planned window.

Where global row r of an epoch lies depends on the row counts of all earlier windows, and
counting them means planning them, which near the end of a multi-billion-document epoch takes
hours in every rank and worker (figures: docs/scale.md, "Loader at scale"). The counts are tiny (8 bytes per window of
thousands of documents), so the planner saves them as it goes and any later process (a worker,
another rank on the node, a resumed run) starts from them and plans only what is new.

The file is keyed by everything the counts depend on: the lengths files (path, size, mtime),
the epoch's document order (seeds, epoch, mixture) and the packing settings. The window a
process reads is always planned anyway and checked against the saved count.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "MODERNBERT_PLAN_CACHE"
SAVE_EVERY = 256  # windows planned between two saves (~1 s of planning at 8192 docs/window)


def cache_dir(data_folder: str | Path) -> Path:
    """$MODERNBERT_PLAN_CACHE, else a hidden folder beside the (first) stream's shards: local
    to the node, shared by its ranks and workers, gone with the data."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(data_folder) / ".row_index"


def file_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a lengths file cheaply: a rewritten file gets a new size or mtime."""
    stat = os.stat(path)
    return {"path": str(Path(path).absolute()), "size": stat.st_size, "mtime": stat.st_mtime_ns}


class RowIndex:
    """Cumulative rows after each planned window of one epoch's plan, persisted in a file."""

    def __init__(self, key: dict[str, Any], folder: Path) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        self.path = folder / f"rows-{digest}.npy"
        self._disabled = False

    def load(self) -> np.ndarray:
        """Row ends of the windows planned so far by any process (empty if none)."""
        try:
            ends = np.load(self.path)
        except (OSError, ValueError):
            return np.empty(0, dtype=np.int64)
        if ends.ndim != 1 or (len(ends) > 1 and (np.diff(ends) < 0).any()):
            return np.empty(0, dtype=np.int64)  # not ours or damaged: plan again
        return ends.astype(np.int64)

    def save(self, row_ends: list[int] | np.ndarray) -> None:
        """Write atomically (concurrent writers hold the same counts); failures only warn."""
        if self._disabled:
            return
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(row_ends, dtype=np.int64))
            os.replace(tmp, self.path)
        except OSError as err:
            self._disabled = True
            warnings.warn(
                f"cannot save the packing row index to {self.path} ({err}); resumes will "
                f"replay the plan (set {CACHE_ENV} to a writable folder)",
                stacklevel=2,
            )
