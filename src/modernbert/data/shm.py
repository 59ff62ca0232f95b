"""Opening a StreamingDataset without streaming's machine-wide side effects getting in the way.

mosaicml-streaming keeps per-dataset state in shared-memory blocks named by a machine-wide
counter ("prefix") and lets the ranks of a node share them. The loader uses a dataset only for
random access to documents, each rank on its own, so two of those effects only hurt here:

* the prefix search opens the blocks of every other process on the machine that uses
  streaming and never closes them (``no_leaked_peeks``);
* the node's ranks agree on a prefix through collective barriers, and two "local leaders" on
  one host (two simulated nodes, or two jobs starting at once) pick the same prefix and one
  fails with FileExistsError. For local streams each process opens its dataset as a world of
  one (no barrier, no shared state with other ranks) and retries on that race
  (``open_dataset``). Remote streams keep streaming's per-node coordination, which makes one
  rank per node download each shard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeVar

import torch.distributed as torch_dist
from streaming.base.shared import SharedMemory
from streaming.base.shared import prefix as shm_prefix

T = TypeVar("T")
# the launcher's view of the ranks, which streaming reads to decide who shares what
_WORLD_VARIABLES = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
PREFIX_RACE_ATTEMPTS = 5


@contextmanager
def no_leaked_peeks() -> Iterator[None]:
    """While a StreamingDataset is built, leave blocks it merely opens to the garbage collector.

    streaming's prefix search opens the shared-memory blocks of every other process on the
    machine that uses streaming and registers each with atexit, so every dataset built here
    kept their descriptors until exit: a leak whose size depended on what else ran on the
    machine. Blocks it creates (its own) keep their cleanup; release_shared_memory frees them.
    """
    original = shm_prefix.SharedMemory

    def opening(
        name: str | None = None,
        create: bool | None = None,
        size: int = 0,
        auto_cleanup: bool = True,
    ) -> SharedMemory:
        return original(name, create, size, auto_cleanup=auto_cleanup and create is not False)

    shm_prefix.SharedMemory = opening
    try:
        yield
    finally:
        shm_prefix.SharedMemory = original


@contextmanager
def world_of_one() -> Iterator[None]:
    """Let streaming see a single-process world while a dataset is opened."""
    saved = {key: os.environ.get(key) for key in _WORLD_VARIABLES}
    os.environ.update(_WORLD_VARIABLES)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def open_dataset(make: Callable[[], T], local_only: bool) -> T:
    """Build a StreamingDataset with ``make`` (see the module notes)."""
    alone = local_only and not (torch_dist.is_available() and torch_dist.is_initialized())
    for attempt in range(PREFIX_RACE_ATTEMPTS):
        try:
            with no_leaked_peeks(), world_of_one() if alone else nullcontext():
                return make()
        except FileExistsError:  # another process registered the same prefix just now
            if not alone or attempt == PREFIX_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
