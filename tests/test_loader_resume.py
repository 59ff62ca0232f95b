"""Exact resumption (Composer's dataset state protocol), worker and rank invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modernbert.data import (
    BatchSizeWarmup,
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
    num_samples_in_batch,
    padded_rows,
)
from modernbert.data.synthetic import lognormal_lengths, write_mds_documents
from modernbert.data.tokenizer import TokenSpec

SEQ = 64
EPOCHS = 2


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> tuple[Path, int]:
    """Documents of unique token ids, so rows of different ranks can be told apart."""
    rng = np.random.default_rng(0)
    lengths = lognormal_lengths(200, rng, median=25, sigma=1.0, cap=300)
    ids = np.arange(int(lengths.sum()), dtype=np.uint32) + 5
    docs = np.split(ids, np.cumsum(lengths)[:-1])
    root = tmp_path_factory.mktemp("resume")
    write_mds_documents(root / "train", docs, size_limit=1 << 12)
    return root, int(ids.max()) + 1


def _loader(stream, *, workers=0, world_size=1, rank=0, batch=4, warmup=True, shuffle_seed=17):
    root, vocab = stream
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(root))},
        max_seq_len=SEQ,
        packing_window=48,  # several windows per epoch
        num_workers=workers,
        mlm_probability=0.3,
        shuffle_seed=shuffle_seed,
    )
    tokens = TokenSpec(
        cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=vocab
    )
    ramp = BatchSizeWarmup(start_batch_size=world_size, warmup_tokens=SEQ * 30) if warmup else None
    return build_mlm_dataloader(
        cfg, tokens, batch, seed=11, world_size=world_size, rank=rank, batch_size_warmup=ramp
    )


def _passes(loader, n: int) -> list[dict[str, torch.Tensor]]:
    """n epochs of flat batches, each seen as padded `[rows, SEQ]` rows (ids, mask, positions,
    labels): rows of different ranks or runs can then be compared and concatenated."""
    return [padded_rows(batch, pad_id=0) for _ in range(n) for batch in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def reference(stream) -> list[dict[str, torch.Tensor]]:
    return _passes(_loader(stream), EPOCHS)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_stream_is_the_same_for_any_worker_count(stream, reference):
    assert len(reference) > 40
    assert _same(_passes(_loader(stream, workers=2), EPOCHS), reference)
    assert _same(_passes(_loader(stream, workers=3), EPOCHS), reference)


def _stop_after(loader, k: int) -> int:
    """Consume k batches (across epochs) like a training loop; return Composer's
    sample_in_epoch at that point (rows of all ranks since the epoch started)."""
    taken = 0
    while True:
        in_epoch = 0
        for batch in loader:
            taken += 1
            in_epoch += num_samples_in_batch(batch)
            if taken == k:
                return in_epoch
        if taken == k:  # the epoch ran out exactly: Composer moves on to the next one
            return 0


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_exactly_the_uninterrupted_batches(stream, reference, workers):
    per_epoch = len(_loader(stream))
    # Inside the batch-size warmup, after it, at the last batch of epoch 0, in epoch 1.
    for k in [3, 17, per_epoch - 1, per_epoch, per_epoch + 5]:
        first = _loader(stream, workers=workers)
        samples = _stop_after(first, k)
        state = first.dataset.state_dict(samples, True)
        if samples:  # the loader's own count agrees with Composer's
            assert first.dataset.state_dict() == state
        resumed = _loader(stream, workers=workers)
        resumed.dataset.load_state_dict(state)
        rest = _passes(resumed, EPOCHS - state["epoch"])
        assert _same(rest, reference[k:]), f"resume at batch {k}"


@pytest.mark.parametrize("workers", [0, 2])
def test_longer_epochs_are_cut_to_the_loader_length(stream, workers):
    """Composer cuts every epoch to len(dataloader); the loader cuts the same way itself, so a
    run resumed inside a longer epoch stops where the uninterrupted run stopped."""
    for shuffle_seed in range(8):  # find an order whose epoch 1 packs into one row more
        loader = _loader(stream, batch=1, warmup=False, shuffle_seed=shuffle_seed)
        if sum(1 for _ in loader.dataset._layout(1, capped=False)) > len(loader):
            break
    else:
        pytest.fail("no shuffle seed packs epoch 1 into more rows than epoch 0")
    full = _passes(loader, EPOCHS)
    assert len(full) == EPOCHS * len(loader)
    k = len(loader) + 5
    first = _loader(stream, batch=1, warmup=False, shuffle_seed=shuffle_seed, workers=workers)
    state = first.dataset.state_dict(_stop_after(first, k), True)
    resumed = _loader(stream, batch=1, warmup=False, shuffle_seed=shuffle_seed, workers=workers)
    resumed.dataset.load_state_dict(state)
    assert _same(_passes(resumed, EPOCHS - state["epoch"]), full[k:])


def test_state_after_a_full_epoch_points_at_the_next_one(stream):
    loader = _loader(stream)
    for _ in loader:
        pass
    assert loader.dataset.state_dict(0, True)["epoch"] == 1  # Composer, after EPOCH_END
    assert loader.dataset.state_dict()["epoch"] == 1
    assert loader.dataset.state_dict()["sample_in_epoch"] == 0


def test_samples_counted_since_a_resume(stream, reference):
    first = _loader(stream)
    state = first.dataset.state_dict(_stop_after(first, 10), True)
    resumed = _loader(stream)
    resumed.dataset.load_state_dict(state)
    it = iter(resumed)
    since = sum(num_samples_in_batch(next(it)) for _ in range(4))
    again = resumed.dataset.state_dict(since, False)  # counted since this run resumed
    assert again["sample_in_epoch"] == state["sample_in_epoch"] + since
    assert again == resumed.dataset.state_dict()


def _original_ids(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Document tokens before masking (labels hold the originals of masked positions)."""
    ids = torch.where(batch["labels"] >= 0, batch["labels"], batch["input_ids"])
    return ids[ids >= 5]


def test_two_ranks_split_each_batch_disjointly(stream):
    single = _passes(_loader(stream, warmup=False), EPOCHS)
    ranks = [_passes(_loader(stream, world_size=2, rank=r, warmup=False), EPOCHS) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, r0, r1 in zip(single, *ranks):
        assert r0["input_ids"].shape[0] == r1["input_ids"].shape[0] == 2
        for key in whole:
            assert torch.equal(torch.cat([r0[key], r1[key]]), whole[key])
        ids = [set(_original_ids(b).tolist()) for b in (r0, r1)]
        assert not (ids[0] & ids[1])  # no token (hence no document piece) is shared


def test_resume_on_another_world_size(stream):
    single = _passes(_loader(stream, warmup=False), EPOCHS)
    first = _loader(stream, warmup=False)
    state = first.dataset.state_dict(_stop_after(first, 9), True)
    halves = []
    for rank in (0, 1):
        loader = _loader(stream, world_size=2, rank=rank, warmup=False)
        loader.dataset.load_state_dict(state)
        halves.append(_passes(loader, EPOCHS - state["epoch"]))
    joined = [{k: torch.cat([a[k], b[k]]) for k in a} for a, b in zip(*halves, strict=True)]
    assert _same(joined, single[9:])


def test_bad_states_are_rejected(stream):
    first = _loader(stream, warmup=False)
    state = first.dataset.state_dict(_stop_after(first, 3), True)  # 12 rows
    loader = _loader(stream, warmup=False)
    with pytest.raises(ValueError, match="batch boundary"):
        loader.dataset.load_state_dict({**state, "sample_in_epoch": state["sample_in_epoch"] + 1})
    with pytest.raises(ValueError, match="max_seq_len"):
        loader.dataset.load_state_dict({**state, "max_seq_len": 128})
    with pytest.raises(ValueError, match="lacks key 'epoch'"):
        loader.dataset.load_state_dict({k: v for k, v in state.items() if k != "epoch"})
    # A different global batch size moves the batch boundaries.
    other = _loader(stream, batch=8, warmup=False)
    with pytest.raises(ValueError, match="batch boundary"):
        other.dataset.load_state_dict(state)
