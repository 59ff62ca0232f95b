"""Split one conversion into N parts that N machines (or array tasks) run independently.

The inputs become a list of units: whole files, byte ranges of large JSONL files, runs of row
groups of large Parquet files. Units are dealt out in input order as N contiguous runs of
about equal bytes, so every part does about the same work and reading the parts in order
reads the inputs in order. What cannot be cut (a Hugging Face stream, the local corpus, a
large gzip file, documents in memory) is read by every part, each keeping the documents whose
key hashes to it. Every part computes the same plan from the inputs alone: no coordinator.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

from modernbert.data.prep.documents import Document, Item, Skipped
from modernbert.data.prep.inputs import PathSource, Source
from modernbert.data.prep.readers import SPLITTERS, file_extension, reader_for

# Scheduler variables that carry the index of an array task, in the order they are tried.
PART_ENV_VARS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")
# Files above this are cut into ranges of about this size (and the unit of balance).
DEFAULT_SPLIT_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Partition:
    """Part `part` of `num_parts` (0-based)."""

    num_parts: int = 1
    part: int = 0

    def __post_init__(self) -> None:
        if self.num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {self.num_parts}")
        if not 0 <= self.part < self.num_parts:
            raise ValueError(f"part must be in [0, {self.num_parts}), got {self.part}")

    @classmethod
    def resolve(
        cls, num_parts: int, part: int | None, env: Mapping[str, str] = os.environ
    ) -> Partition:
        """The partition from --part, else from the scheduler's array index variables."""
        if part is None and num_parts > 1:
            found = [(name, env[name]) for name in PART_ENV_VARS if env.get(name, "") != ""]
            if not found:
                raise ValueError(
                    f"--num-parts {num_parts} needs --part I or one of {', '.join(PART_ENV_VARS)}"
                )
            name, value = found[0]
            try:
                part = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a part index") from None
            if not 0 <= part < num_parts:
                raise ValueError(
                    f"{name}={part} is outside [0, {num_parts}) (a Slurm array must be "
                    f"--array=0-{num_parts - 1})"
                )
        return cls(num_parts, part or 0)

    def owns(self, key: str) -> bool:
        """Whether a document (by its stable key) of a shared unit belongs to this part."""
        if self.num_parts == 1:
            return True
        digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"part").digest()
        return int.from_bytes(digest, "big") % self.num_parts == self.part


@dataclass(frozen=True)
class Unit:
    """A piece of the input. `shared` units are read by every part, filtered by key hash."""

    name: str
    nbytes: int
    read: Callable[[], Iterator[Item]]
    shared: bool = False


def plan_units(
    sources: Iterable[Source], split_bytes: int = DEFAULT_SPLIT_BYTES, exact_keys: bool = True
) -> list[Unit]:
    """Every source as units, in input order (the same list on every machine).

    `exact_keys=False` lets a range skip counting the lines before it (a sample needs no keys).
    """
    if split_bytes < 1:
        raise ValueError(f"split_bytes must be >= 1, got {split_bytes}")
    units: list[Unit] = []
    for source in sources:
        if isinstance(source, PathSource):
            units.extend(_path_units(source, split_bytes, exact_keys))
        else:
            units.append(Unit(source.name, 0, source.__iter__, shared=True))
    return units


def _path_units(source: PathSource, split_bytes: int, exact_keys: bool) -> Iterator[Unit]:
    for entry in source.listing():
        if isinstance(entry, Skipped):
            yield Unit(entry.where, 0, partial(iter, (entry,)))
            continue
        path, key = entry
        reader = reader_for(path)
        assert reader is not None
        read = partial(reader, path, source.name, key, source.options)
        size = path.stat().st_size
        if size <= split_bytes:
            yield Unit(str(path), size, read)
            continue
        splitter = SPLITTERS.get(file_extension(path))
        ranges = splitter(path, split_bytes) if splitter is not None else None
        if ranges is None or len(ranges) < 2:  # too big for one part, cannot be cut
            yield Unit(str(path), size, read, shared=splitter is not None)
            continue
        for start, stop, nbytes in ranges:
            ranged = partial(read, start, stop, number_lines=exact_keys)
            yield Unit(f"{path}[{start}:{stop}]", nbytes, ranged)


def assign(units: list[Unit], partition: Partition) -> list[Unit]:
    """The units part `partition.part` reads: its contiguous run, plus every shared unit.

    A unit goes to the part whose byte interval holds its middle byte.
    """
    total = sum(u.nbytes for u in units if not u.shared)
    n = partition.num_parts
    mine: list[Unit] = []
    before = 0
    for i, unit in enumerate(units):
        if unit.shared:
            mine.append(unit)
            continue
        middle2 = 2 * before + unit.nbytes  # twice the middle byte: integers only
        part = min(n - 1, middle2 * n // (2 * total)) if total else i % n
        if part == partition.part:
            mine.append(unit)
        before += unit.nbytes
    return mine


def iter_part(
    sources: Iterable[Source], partition: Partition, split_bytes: int = DEFAULT_SPLIT_BYTES
) -> Iterator[Item]:
    """The items of one part; over all parts, every item of the sources exactly once."""
    for unit in assign(plan_units(sources, split_bytes), partition):
        for item in unit.read():
            if not unit.shared or partition.owns(
                item.key if isinstance(item, Document) else item.where
            ):
                yield item
