"""Packing plans: pieces, best-fit-decreasing bins, real-token fraction, lazy epoch rows."""

from __future__ import annotations

import numpy as np
import pytest

from modernbert.data.packing import (
    SPECIALS_PER_PIECE,
    EpochPacking,
    best_fit_decreasing,
    pack_window,
    split_documents,
)
from modernbert.data.synthetic import lognormal_lengths


def test_split_documents_covers_each_document_exactly():
    lengths = np.array([0, 1, 5, 6, 7, 13, 18])
    doc, start, length = split_documents(lengths, max_seq_len=8)  # 6 content tokens per piece
    assert length.max() <= 6 and length.min() >= 1
    for d, n in enumerate(lengths):
        mine = doc == d
        assert length[mine].sum() == n  # no token lost or duplicated
        assert list(start[mine]) == list(range(0, n, 6))  # contiguous, in order
    assert not (doc == 0).any()  # empty documents contribute no piece


def test_split_documents_rejects_rows_too_short_for_cls_sep():
    with pytest.raises(ValueError, match="max_seq_len"):
        split_documents(np.array([4]), max_seq_len=2)


def test_best_fit_decreasing_respects_capacity_and_fills_bins():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 100, size=2000)
    bins = best_fit_decreasing(sizes, capacity=100)
    load = np.bincount(bins, weights=sizes)
    assert load.max() <= 100
    assert set(np.unique(bins)) == set(range(len(load)))  # bin ids are dense
    assert len(load) <= 1.02 * np.ceil(sizes.sum() / 100)  # near the lower bound


def test_best_fit_decreasing_prefers_the_fullest_bin_that_fits():
    # 7 opens bin 0 (3 left), 6 opens bin 1 (4 left); 3 must go to bin 0, not bin 1.
    bins = best_fit_decreasing(np.array([7, 6, 3]), capacity=10)
    assert list(bins) == [0, 1, 0]


def test_best_fit_decreasing_rejects_oversized_items():
    with pytest.raises(ValueError, match="item sizes"):
        best_fit_decreasing(np.array([11]), capacity=10)


@pytest.mark.parametrize("max_seq_len", [1024, 512])
def test_packing_efficiency_on_realistic_lengths(max_seq_len):
    rng = np.random.default_rng(1)
    lengths = lognormal_lengths(20000, rng)  # median 300, ~10% longer than a 1024 row
    assert (lengths > max_seq_len).mean() > 0.05
    plan = EpochPacking(lengths, max_seq_len, window=8192, seed=(17, 0))
    rows = plan.total_rows()
    doc, _, length = split_documents(lengths, max_seq_len)
    real = length.sum() + SPECIALS_PER_PIECE * len(doc)
    assert real / (rows * max_seq_len) >= 0.99


def test_pack_window_rows_hold_every_piece_once_within_capacity():
    rng = np.random.default_rng(2)
    lengths = lognormal_lengths(500, rng, median=40, cap=400)
    rows = pack_window(lengths, 64, rng)
    used = np.zeros(len(lengths), dtype=np.int64)
    for r in range(rows.num_rows):
        s = rows.pieces(r)
        assert (rows.length[s] + SPECIALS_PER_PIECE).sum() <= 64
        np.add.at(used, rows.doc[s], rows.length[s])
    assert (used == lengths).all()


def test_pack_window_row_shuffle_is_seeded():
    lengths = lognormal_lengths(300, np.random.default_rng(3), median=30, cap=200)

    def plan(seed):
        rows = pack_window(lengths, 64, np.random.default_rng(seed))
        return rows.doc.tolist(), rows.row_offsets.tolist()

    assert plan(5) == plan(5)
    assert plan(5) != plan(6)


def test_epoch_packing_rows_match_the_window_plans():
    rng = np.random.default_rng(4)
    lengths = lognormal_lengths(1000, rng, median=30, cap=300)
    window = 128
    plan = EpochPacking(lengths, 64, window, seed=(1, 0))
    total = plan.total_rows()
    # Reading in arbitrary increasing chunks gives the same rows as the plan of each window.
    expected = []
    for w in range(plan.num_windows):
        part = pack_window(
            lengths[w * window : (w + 1) * window], 64, np.random.default_rng([1, 0, w])
        )
        for r in range(part.num_rows):
            s = part.pieces(r)
            expected.append((part.doc[s] + w * window).tolist())
    fresh = EpochPacking(lengths, 64, window, seed=(1, 0))
    got, lo = [], 0
    for step in [1, 7, 50, 3, 200, 1000]:
        hi = min(total, lo + step)
        got += [doc.tolist() for doc, _, _ in fresh.rows(lo, hi)]
        lo = hi
    got += [doc.tolist() for doc, _, _ in fresh.rows(lo, total)]
    assert got == expected
    assert fresh.has_rows(total) and not fresh.has_rows(total + 1)
    with pytest.raises(IndexError):
        fresh.rows(total, total + 1)
