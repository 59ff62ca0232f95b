"""doc_lengths.npy written and concatenated in chunks, so memory stays flat at any corpus size.

A trillion-token corpus has billions of documents: a Python list of their lengths would take
tens of GB, and even a uint32 array 4 bytes each in every converter process. Lengths are
appended to a raw file instead and turned into a .npy (header + the same bytes) at the end.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from pathlib import Path

import numpy as np

LENGTH_DTYPE = np.uint32
_FLUSH = 1 << 20  # lengths buffered before a write (4 MiB)
_COPY = 1 << 24  # lengths copied per chunk when building a .npy (64 MiB)


class LengthsWriter:
    """Appends document lengths; ``finish()`` writes PATH as a 1-D uint32 .npy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw_path = path.with_name(path.name + ".raw")
        self._raw = open(self._raw_path, "wb")  # noqa: SIM115 - closed in finish()/discard()
        self._buffer = array("I")
        self.count = 0

    def append(self, length: int) -> None:
        self._buffer.append(length)
        self.count += 1
        if len(self._buffer) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        self._raw.write(self._buffer.tobytes())
        self._buffer = array("I")

    def finish(self) -> Path:
        self._flush()
        self._raw.close()
        concat_lengths([self._raw_path], self.path, raw=True)
        os.remove(self._raw_path)
        return self.path

    def discard(self) -> None:
        self._raw.close()
        if self._raw_path.exists():
            os.remove(self._raw_path)


def concat_lengths(inputs: Sequence[Path], output: Path, *, raw: bool = False) -> int:
    """Write the lengths of `inputs` (.npy files, or raw uint32 with raw=True) one after the
    other into the .npy `output`, chunk by chunk; returns the number of lengths."""
    arrays = [
        np.memmap(p, dtype=LENGTH_DTYPE, mode="r") if raw and p.stat().st_size else
        np.zeros(0, LENGTH_DTYPE) if raw else np.load(p, mmap_mode="r")
        for p in inputs
    ]  # fmt: skip
    for path, lengths in zip(inputs, arrays, strict=True):
        if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"{path}: not a 1-D integer lengths array ({lengths.dtype})")
    total = sum(len(a) for a in arrays)
    if total == 0:
        np.save(output, np.zeros(0, LENGTH_DTYPE))
        return 0
    merged = np.lib.format.open_memmap(output, mode="w+", dtype=LENGTH_DTYPE, shape=(total,))
    at = 0
    for lengths in arrays:
        for lo in range(0, len(lengths), _COPY):
            chunk = lengths[lo : lo + _COPY]
            merged[at : at + len(chunk)] = chunk
            at += len(chunk)
    merged.flush()
    del merged
    return total
