"""Sequence packing planned from document lengths alone.

Each document becomes ``[CLS] tokens [SEP]`` pieces of at most ``max_seq_len`` tokens (a long
document is split, every piece with its own CLS/SEP). Pieces of a window of documents are packed
into rows by best-fit-decreasing. Because the plan needs lengths only, a resumed run replays it
without reading any shard, and every rank and worker derives the same rows independently; the
row counts per window are kept in a small index (row_index.py) so a replay starts where the
index ends instead of at the start of the epoch.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modernbert.data.row_index import SAVE_EVERY, RowIndex

SPECIALS_PER_PIECE = 2  # [CLS] and [SEP]
_SHIFT = 32  # open bins are keyed (remaining << _SHIFT) | bin so one bisect finds the best fit
_BIN_MASK = (1 << _SHIFT) - 1
_CACHED_WINDOWS = 2


def split_documents(
    lengths: np.ndarray, max_seq_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut documents into pieces of at most max_seq_len - 2 tokens: (doc, start, length)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    chunk = max_seq_len - SPECIALS_PER_PIECE
    if chunk < 1:
        raise ValueError(f"max_seq_len must be >= 3 ([CLS] token [SEP]), got {max_seq_len}")
    n_pieces = -(-lengths // chunk)  # ceil; empty documents yield no piece
    doc = np.repeat(np.arange(len(lengths), dtype=np.int64), n_pieces)
    first_piece = np.cumsum(n_pieces) - n_pieces
    index_in_doc = np.arange(len(doc), dtype=np.int64) - np.repeat(first_piece, n_pieces)
    start = index_in_doc * chunk
    length = np.minimum(lengths[doc] - start, chunk)
    return doc, start, length


def best_fit_decreasing(sizes: np.ndarray, capacity: int) -> np.ndarray:
    """Bin of each item: largest first, each into the fullest bin that still has room."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) and (sizes.max() > capacity or sizes.min() < 1):
        raise ValueError(f"item sizes must be in [1, {capacity}]")
    bins = np.empty(len(sizes), dtype=np.int64)
    full = sizes == capacity  # a full item is a bin on its own: no search needed
    n_full = int(full.sum())
    bins[full] = np.arange(n_full)
    rest = np.flatnonzero(~full)
    if not len(rest):
        return bins
    order = rest[np.argsort(-sizes[rest], kind="stable")]
    smallest = int(sizes[rest].min())
    n_bins = n_full
    open_bins: list[int] = []
    assigned = np.empty(len(order), dtype=np.int64)
    for k, size in enumerate(sizes[order].tolist()):
        pos = bisect_left(open_bins, size << _SHIFT)
        if pos < len(open_bins):
            key = open_bins.pop(pos)
            b, left = key & _BIN_MASK, (key >> _SHIFT) - size
        else:
            b, left = n_bins, capacity - size
            n_bins += 1
        assigned[k] = b
        if left >= smallest:
            insort(open_bins, (left << _SHIFT) | b)
    bins[order] = assigned
    return bins


@dataclass(frozen=True)
class PackedRows:
    """Rows of a packed window; row r holds pieces ``row_offsets[r]:row_offsets[r + 1]``."""

    doc: np.ndarray  # index of the piece's document (within the window's documents)
    start: np.ndarray  # first token of the piece inside its document
    length: np.ndarray  # tokens of the piece, without CLS/SEP
    row_offsets: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.row_offsets) - 1

    @property
    def num_tokens(self) -> int:
        """Real tokens (content + CLS/SEP) in all rows."""
        return int(self.length.sum()) + SPECIALS_PER_PIECE * len(self.length)

    def pieces(self, row: int) -> slice:
        return slice(int(self.row_offsets[row]), int(self.row_offsets[row + 1]))


def pack_window(
    lengths: np.ndarray, max_seq_len: int, rng: np.random.Generator | None = None
) -> PackedRows:
    """Pack documents of the given lengths into rows; `rng` shuffles the row order.

    Best-fit-decreasing places the longest pieces first, so without the shuffle the first rows
    of a window would hold only long documents and the last ones only short ones.
    """
    doc, start, length = split_documents(lengths, max_seq_len)
    bins = best_fit_decreasing(length + SPECIALS_PER_PIECE, max_seq_len)
    n_rows = int(bins.max()) + 1 if len(bins) else 0
    if rng is not None and n_rows:
        bins = rng.permutation(n_rows)[bins]
    order = np.argsort(bins, kind="stable")
    counts = np.bincount(bins, minlength=n_rows)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return PackedRows(doc[order], start[order], length[order], offsets)


class GatheredLengths:
    """Lengths of an epoch's documents in epoch order, gathered one slice at a time.

    `order` maps positions to document ids (an array, or a lazy permutation); `lengths` is
    indexed by id (a memory map): a window costs memory for its own documents only.
    """

    def __init__(self, lengths: Sequence, order: Sequence) -> None:
        self.lengths = lengths
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, window: slice) -> np.ndarray:
        return np.asarray(self.lengths[np.asarray(self.order[window])], dtype=np.int64)


class EpochPacking:
    """The rows of one epoch, numbered globally, planned window by window on demand.

    Rows are consumed in increasing order, so only the window being read is kept in memory.
    Where a row lies needs the row counts of the windows before it: they come from `index`
    (saved by whichever process planned them first), and only windows past it are planned.
    """

    def __init__(
        self,
        lengths: Sequence,
        max_seq_len: int,
        window: int,
        seed: tuple[int, ...] | None,
        index: RowIndex | None = None,
    ) -> None:
        self.lengths = lengths if hasattr(lengths, "__getitem__") else np.asarray(lengths)
        self.max_seq_len = max_seq_len
        self.window = window
        self.seed = seed  # None: rows stay in plan order (no shuffling)
        self.num_windows = -(-len(self.lengths) // window)
        self.index = index
        known = index.load()[: self.num_windows] if index is not None else ()
        self._row_ends: list[int] = [int(e) for e in known]  # cumulative rows per window
        self._saved = len(self._row_ends)
        self._checked: set[int] = set()  # cached windows whose count was checked by planning
        self._cache: dict[int, PackedRows] = {}  # the last planned windows (a batch may span two)

    def _plan(self, w: int) -> PackedRows:
        if w in self._cache:
            return self._cache[w]
        rng = None if self.seed is None else np.random.default_rng([*self.seed, w])
        docs = np.asarray(self.lengths[w * self.window : (w + 1) * self.window], dtype=np.int64)
        rows = pack_window(docs, self.max_seq_len, rng)
        if w < len(self._row_ends) and w not in self._checked:
            self._check_index(w, rows.num_rows)
        if len(self._cache) >= _CACHED_WINDOWS:
            del self._cache[min(self._cache)]
        self._cache[w] = rows
        return rows

    def _check_index(self, w: int, num_rows: int) -> None:
        before = self._row_ends[w - 1] if w else 0
        if self._row_ends[w] - before != num_rows:
            raise RuntimeError(
                f"packing row index {self.index.path if self.index else ''} says window {w} "
                f"has {self._row_ends[w] - before} rows but it packs into {num_rows}: the index "
                "is stale (data changed in place?); delete it and restart"
            )
        self._checked.add(w)

    def _plan_next(self) -> bool:
        w = len(self._row_ends)
        if w >= self.num_windows:
            return False
        before = self._row_ends[-1] if self._row_ends else 0
        self._row_ends.append(before + self._plan(w).num_rows)
        self._checked.add(w)
        done = len(self._row_ends) == self.num_windows
        if self.index is not None and (done or len(self._row_ends) - self._saved >= SAVE_EVERY):
            self.index.save(self._row_ends)
            self._saved = len(self._row_ends)
        return True

    def has_rows(self, n: int) -> bool:
        """Whether the epoch holds at least n rows (plans only as far as needed)."""
        while (self._row_ends[-1] if self._row_ends else 0) < n:
            if not self._plan_next():
                return False
        return True

    def total_rows(self) -> int:
        while self._plan_next():
            pass
        return self._row_ends[-1] if self._row_ends else 0

    def rows(self, lo: int, hi: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Pieces (doc position in the epoch, start, length) of rows lo..hi-1."""
        if not self.has_rows(hi):
            raise IndexError(f"rows {lo}:{hi} past the end of the epoch")
        out = []
        w = int(np.searchsorted(self._row_ends, lo, side="right"))
        while lo < hi:
            first_row = self._row_ends[w - 1] if w else 0
            plan = self._plan(w)
            end = min(hi, self._row_ends[w])
            for r in range(lo - first_row, end - first_row):
                s = plan.pieces(r)
                out.append((plan.doc[s] + w * self.window, plan.start[s], plan.length[s]))
            lo, w = end, w + 1
        return out
