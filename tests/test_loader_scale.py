"""Loader costs that must not grow with the corpus: lazy epoch order, saved row index, mmap."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from modernbert.data import MLMLoaderConfig, StreamConfig, build_mlm_dataloader
from modernbert.data import packing as packing_module
from modernbert.data.epoch_order import PermutedRange
from modernbert.data.packing import EpochPacking, GatheredLengths
from modernbert.data.row_index import RowIndex
from modernbert.data.synthetic import lognormal_lengths, write_mds_documents
from modernbert.data.tokenizer import TokenSpec


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 1000, 4097, 70001])
def test_permuted_range_is_a_permutation(n: int) -> None:
    order = PermutedRange(n, (7, 0))
    ids = order[0:n]
    assert len(order) == n and sorted(ids.tolist()) == list(range(n))
    assert all(order[i] == ids[i] for i in range(0, n, max(1, n // 97)))  # items == slices
    if n > 2:
        assert order[n // 3 : n // 2].tolist() == ids[n // 3 : n // 2].tolist()
        assert order[-1] == ids[-1]


def test_permuted_range_depends_on_the_seed_only() -> None:
    n = 5000
    a, b = PermutedRange(n, (7, 0))[0:n], PermutedRange(n, (7, 0))[0:n]
    assert np.array_equal(a, b)
    other = PermutedRange(n, (7, 1))[0:n]
    assert not np.array_equal(a, other)
    assert abs(np.corrcoef(a, np.arange(n))[0, 1]) < 0.1  # shuffled, not near the identity
    with pytest.raises(IndexError):
        PermutedRange(n, (1,))[n]


def counting_planner(monkeypatch) -> list[int]:
    """Patch pack_window to count how many windows get planned."""
    calls: list[int] = []
    real = packing_module.pack_window

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(packing_module, "pack_window", counted)
    return calls


def test_saved_row_index_lets_a_resume_jump_to_its_window(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    lengths = lognormal_lengths(5000, rng, median=30, cap=300)
    window, key = 50, {"test": 1}
    reference = EpochPacking(lengths, 64, window, seed=(1, 0))
    total = reference.total_rows()
    tail = [d.tolist() for d, _, _ in reference.rows(total - 5, total)]

    first = EpochPacking(lengths, 64, window, (1, 0), RowIndex(key, tmp_path))
    assert first.total_rows() == total  # plans every window once and saves the counts
    calls = counting_planner(monkeypatch)
    resumed = EpochPacking(lengths, 64, window, (1, 0), RowIndex(key, tmp_path))
    assert [d.tolist() for d, _, _ in resumed.rows(total - 5, total)] == tail
    assert resumed.total_rows() == total
    assert len(calls) <= 2  # the window(s) read, not the 100 before them
    calls.clear()
    replay = EpochPacking(lengths, 64, window, (1, 0), RowIndex({"other": 1}, tmp_path))
    assert [d.tolist() for d, _, _ in replay.rows(total - 5, total)] == tail
    assert len(calls) == replay.num_windows  # without an index: the whole replay


def test_a_stale_row_index_is_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    lengths = lognormal_lengths(600, rng, median=30, cap=300)
    EpochPacking(lengths, 64, 50, (1, 0), RowIndex({"k": 1}, tmp_path)).total_rows()
    changed = lengths.copy()
    changed[-40:] = 250  # same file identity in the key, other data: counts are off
    plan = EpochPacking(changed, 64, 50, (1, 0), RowIndex({"k": 1}, tmp_path))
    with pytest.raises(RuntimeError, match="index is stale"):
        plan.rows(plan._row_ends[-2], plan._row_ends[-1])


def test_periodic_saves_while_planning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(packing_module, "SAVE_EVERY", 4)
    lengths = lognormal_lengths(1000, np.random.default_rng(1), median=30, cap=300)
    index = RowIndex({"k": 2}, tmp_path)
    plan = EpochPacking(lengths, 64, 50, (1, 0), index)
    plan.has_rows(300)  # several windows in, as a run that stopped early
    saved = index.load()
    assert 4 <= len(saved) <= len(plan._row_ends) and saved.tolist() == plan._row_ends[: len(saved)]


def test_gathered_lengths_follow_the_order() -> None:
    lengths = np.arange(100, dtype=np.uint32) * 3
    order = PermutedRange(100, (2, 0))
    gathered = GatheredLengths(lengths, order)
    assert len(gathered) == 100
    assert gathered[10:20].tolist() == (order[10:20] * 3).tolist()


def test_loader_maps_lengths_and_pickles_without_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(5, 50, size=int(n), dtype=np.uint32) for n in rng.integers(3, 60, 300)]
    write_mds_documents(tmp_path / "train", docs)
    cfg = MLMLoaderConfig(streams={"s": StreamConfig(local=str(tmp_path))}, max_seq_len=32)
    tokens = TokenSpec(cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4),
                       vocab_size=50)  # fmt: skip
    loader = build_mlm_dataloader(cfg, tokens, 4, seed=0, world_size=1, rank=0)
    source = loader.dataset.source
    assert isinstance(source.lengths, np.memmap)
    assert isinstance(source.epoch_documents(0), PermutedRange)  # no O(documents) order
    assert source.__getstate__()["lengths"] is None  # a pickle leaves the lengths behind
    clone = pickle.loads(pickle.dumps(source))  # and the copy (a worker) maps them again
    assert isinstance(clone.lengths, np.memmap)
    assert clone.lengths.tolist() == [len(d) for d in docs]
    assert len(loader) > 0  # plans epoch 0, whose row counts are saved beside the shards
    assert list((tmp_path / "train" / ".row_index").glob("rows-*.npy"))
