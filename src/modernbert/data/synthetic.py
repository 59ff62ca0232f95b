"""Synthetic MDS streams in the layout of docs/interfaces.md section 1.

Tests and benchmarks need shards without a tokenizer or a hub download: these helpers draw
document lengths like web text (log-normal, a tail longer than a row) and write them with
``streaming.MDSWriter`` plus the ``doc_lengths.npy`` the loader plans from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from streaming import MDSWriter

from modernbert.data.mds_format import DOC_LENGTHS_FILE, mds_columns
from modernbert.data.shard_hash import SHARD_HASH


def lognormal_lengths(
    n: int, rng: np.random.Generator, *, median: float = 300.0, sigma: float = 1.2, cap: int = 20000
) -> np.ndarray:
    """Document lengths (>= 1 token) shaped like web text: many short, a few very long."""
    lengths = rng.lognormal(mean=np.log(median), sigma=sigma, size=n)
    return np.clip(np.rint(lengths), 1, cap).astype(np.int64)


def random_documents(
    lengths: Sequence[int] | np.ndarray, rng: np.random.Generator, *, low: int, high: int
) -> list[np.ndarray]:
    """One uint32 document per length, token ids uniform in [low, high)."""
    return [rng.integers(low, high, size=int(n), dtype=np.uint32) for n in lengths]


def write_mds_documents(
    folder: str | Path,
    documents: Sequence[np.ndarray],
    *,
    source: str = "synthetic",
    language: str = "text",
    size_limit: int = 1 << 22,
    write_lengths: bool = True,
) -> Path:
    """Write documents as one MDS dataset in `folder` (+ doc_lengths.npy); return the folder."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"refusing to write MDS shards into non-empty folder {folder}")
    with MDSWriter(
        out=str(folder), columns=mds_columns("uint32"), size_limit=size_limit, hashes=[SHARD_HASH]
    ) as writer:
        for doc in documents:
            ids = np.asarray(doc, dtype=np.uint32)
            writer.write({"input_ids": ids, "source": source, "language": language})
    if write_lengths:
        lengths = np.array([len(doc) for doc in documents], dtype=np.uint32)
        np.save(folder / DOC_LENGTHS_FILE, lengths)
    return folder
