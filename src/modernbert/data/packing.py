"""Sequence packing planned from document lengths alone.

Each document becomes ``[CLS] tokens [SEP]`` pieces of at most ``max_seq_len`` tokens (a long
document is split, every piece with its own CLS/SEP). Pieces of a window of documents are packed
into rows by best-fit-decreasing. Because the plan needs lengths only, a resumed run replays it
without reading any shard, and every rank and worker derives the same rows independently.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

import numpy as np

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


class EpochPacking:
    """The rows of one epoch, numbered globally, planned window by window on demand.

    Rows are consumed in increasing order, so only the window being read is kept in memory;
    counting the rows before a resume point replays the plan of the earlier windows only.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        max_seq_len: int,
        window: int,
        seed: tuple[int, ...] | None,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_seq_len = max_seq_len
        self.window = window
        self.seed = seed  # None: rows stay in plan order (no shuffling)
        self.num_windows = -(-len(self.lengths) // window)
        self._row_ends: list[int] = []  # cumulative row count after each planned window
        self._cache: dict[int, PackedRows] = {}  # the last planned windows (a batch may span two)

    def _plan(self, w: int) -> PackedRows:
        if w in self._cache:
            return self._cache[w]
        rng = None if self.seed is None else np.random.default_rng([*self.seed, w])
        docs = self.lengths[w * self.window : (w + 1) * self.window]
        rows = pack_window(docs, self.max_seq_len, rng)
        if len(self._cache) >= _CACHED_WINDOWS:
            del self._cache[min(self._cache)]
        self._cache[w] = rows
        return rows

    def _plan_next(self) -> bool:
        w = len(self._row_ends)
        if w >= self.num_windows:
            return False
        before = self._row_ends[-1] if self._row_ends else 0
        self._row_ends.append(before + self._plan(w).num_rows)
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
