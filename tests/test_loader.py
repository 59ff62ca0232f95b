"""The MLM loader end to end on MDS shards written here: layout, coverage, mixtures, warmup."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from modernbert.data import (
    IGNORE_INDEX,
    BatchSizeWarmup,
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
    num_samples_in_batch,
    num_tokens_in_batch,
    packing_efficiency,
    padded_rows,
)
from modernbert.data.batching import BatchSchedule
from modernbert.data.synthetic import lognormal_lengths, random_documents, write_mds_documents
from modernbert.data.tokenizer import TokenSpec

SEQ = 64
FIRST_ID = 5  # ids below are special
CHUNK = SEQ - 2


def _tokens(vocab_size: int) -> TokenSpec:
    return TokenSpec(
        cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=vocab_size
    )


@pytest.fixture(scope="module")
def unique_stream(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """Documents whose every token id is unique, so each token can be traced to its origin."""
    rng = np.random.default_rng(0)
    lengths = lognormal_lengths(300, rng, median=25, sigma=1.0, cap=300)  # some span 2-5 rows
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs = [np.arange(a, b, dtype=np.uint32) + FIRST_ID for a, b in pairwise(offsets)]
    root = tmp_path_factory.mktemp("unique")
    write_mds_documents(root / "train", docs, size_limit=1 << 12)
    return root, docs


def _config(root: Path, **overrides) -> MLMLoaderConfig:
    base = {"max_seq_len": SEQ, "packing_window": 64, "mlm_probability": 0.0}
    return MLMLoaderConfig(streams={"s": StreamConfig(local=str(root))}, **{**base, **overrides})


def _vocab(docs: list[np.ndarray]) -> int:
    return int(max(d.max() for d in docs)) + 1


def _rows(loader) -> list[dict[str, torch.Tensor]]:
    """The loader's flat batches seen as `[rows, SEQ]` padded rows (pad id 0)."""
    return [padded_rows(batch, pad_id=0) for batch in loader]


def test_batches_follow_the_interface_and_keep_documents_apart(unique_stream):
    root, docs = unique_stream
    loader = build_mlm_dataloader(
        _config(root, drop_last=False), _tokens(_vocab(docs)), 8, seed=0, world_size=1, rank=0
    )
    batches = _rows(loader)
    assert len(batches) == len(loader)
    for batch in batches:
        for ids, mask, pos in zip(
            batch["input_ids"], batch["attention_mask"], batch["position_ids"]
        ):
            n = int(mask.sum())
            assert (mask[:n] == 1).all() and (mask[n:] == 0).all()  # padding only at the end
            assert (ids[n:] == 0).all() and (pos[n:] == 0).all()
            starts = (pos[:n] == 0).nonzero().flatten().tolist()
            assert starts[0] == 0 and (ids[starts] == 1).all()  # every piece starts with CLS
            assert ((ids[:n] == 1).nonzero().flatten().tolist()) == starts  # and only there
            ends = [*[s - 1 for s in starts[1:]], n - 1]
            assert (ids[ends] == 2).all()  # every piece ends with SEP
            for s, e in zip(starts, ends):
                assert (pos[s : e + 1] == torch.arange(e - s + 1)).all()
                body = ids[s + 1 : e]
                # A piece is one contiguous run of one document (ids are unique and sequential).
                assert len(body) >= 1 and (body.diff() == 1).all()


def test_every_token_appears_exactly_once_per_epoch(unique_stream):
    root, docs = unique_stream
    loader = build_mlm_dataloader(
        _config(root, drop_last=False), _tokens(_vocab(docs)), 4, seed=0, world_size=1, rank=0
    )
    for _epoch in range(2):
        seen = []
        for batch in _rows(loader):
            ids = batch["input_ids"][batch["attention_mask"].bool()]
            seen.append(ids[ids >= FIRST_ID])
        seen = torch.cat(seen).sort().values
        assert torch.equal(seen, torch.from_numpy(np.concatenate(docs).astype(np.int64)))


def test_long_documents_split_at_row_size(unique_stream):
    root, docs = unique_stream
    doc_start = {int(d[0]): len(d) for d in docs}
    first_of = np.repeat([int(d[0]) for d in docs], [len(d) for d in docs])
    loader = build_mlm_dataloader(
        _config(root, drop_last=False), _tokens(_vocab(docs)), 4, seed=0, world_size=1, rank=0
    )
    pieces = 0
    for batch in _rows(loader):
        for ids in batch["input_ids"]:
            starts = (ids == 1).nonzero().flatten().tolist()
            for s in starts:
                first = int(ids[s + 1])
                origin = int(first_of[first - FIRST_ID])  # first token of its document
                assert (first - origin) % CHUNK == 0  # pieces start at multiples of the chunk
                remaining = doc_start[origin] - (first - origin)
                length = int((ids[s + 1 :] >= FIRST_ID).int().cumprod(0).sum())
                assert length == min(CHUNK, remaining)
                pieces += 1
    assert pieces == sum(-(-len(d) // CHUNK) for d in docs)
    assert any(len(d) > CHUNK for d in docs)


def test_masking_changes_only_labelled_positions(unique_stream):
    root, docs = unique_stream
    tokens = _tokens(_vocab(docs))
    plain = _rows(build_mlm_dataloader(_config(root), tokens, 4, seed=3, world_size=1, rank=0))
    masked = _rows(
        build_mlm_dataloader(
            _config(root, mlm_probability=0.3), tokens, 4, seed=3, world_size=1, rank=0
        )
    )
    selected = total = 0
    for p, m in zip(plain, masked, strict=True):
        chosen = m["labels"] != IGNORE_INDEX
        assert torch.equal(m["labels"][chosen], p["input_ids"][chosen])
        assert torch.equal(m["input_ids"][~chosen], p["input_ids"][~chosen])
        assert (p["input_ids"][chosen] >= FIRST_ID).all()  # CLS/SEP/PAD never selected
        assert torch.equal(m["position_ids"], p["position_ids"])
        selected += int(chosen.sum())
        total += int((p["input_ids"] >= FIRST_ID).sum())
    assert abs(selected / total - 0.3) < 0.02


def test_epochs_reshuffle_and_repeat_with_the_same_seed(unique_stream):
    root, docs = unique_stream
    tokens = _tokens(_vocab(docs))

    def epochs(shuffle_seed):
        loader = build_mlm_dataloader(
            _config(root, shuffle_seed=shuffle_seed), tokens, 4, seed=0, world_size=1, rank=0
        )
        return [torch.cat([b["input_ids"] for b in _rows(loader)]) for _ in range(2)]

    a0, a1 = epochs(5)
    b0, b1 = epochs(5)
    c0, _ = epochs(6)
    assert torch.equal(a0, b0) and torch.equal(a1, b1)
    assert not torch.equal(a0[: len(a1)], a1[: len(a0)])
    assert not torch.equal(a0[: len(c0)], c0[: len(a0)])


def test_eval_loader_replays_the_same_pass(unique_stream):
    root, docs = unique_stream
    cfg = _config(root, mlm_probability=0.3).eval_variant(split="train")
    assert cfg.mlm_probability == 0.15 and not cfg.shuffle and not cfg.drop_last
    loader = build_mlm_dataloader(
        cfg, _tokens(_vocab(docs)), 4, seed=0, world_size=1, rank=0, evaluation=True
    )
    first, second = list(loader), list(loader)
    assert all(
        torch.equal(a["masked_labels"], b["masked_labels"])
        and torch.equal(a["masked_positions"], b["masked_positions"])
        for a, b in zip(first, second, strict=True)
    )


def test_batch_helpers(unique_stream):
    root, docs = unique_stream
    loader = build_mlm_dataloader(
        _config(root), _tokens(_vocab(docs)), 4, seed=0, world_size=1, rank=0
    )
    batch = next(iter(loader))
    assert num_samples_in_batch(batch) == 4
    assert num_tokens_in_batch(batch) == int(padded_rows(batch, 0)["attention_mask"].sum())
    assert num_tokens_in_batch(batch) == batch["input_ids"].numel()
    assert packing_efficiency(batch) == pytest.approx(num_tokens_in_batch(batch) / (4 * SEQ))


def test_packing_efficiency_of_loader_batches(tmp_path):
    rng = np.random.default_rng(5)
    lengths = lognormal_lengths(3000, rng, median=120, sigma=1.2, cap=3000)
    write_mds_documents(tmp_path / "train", random_documents(lengths, rng, low=FIRST_ID, high=1000))
    cfg = MLMLoaderConfig(streams={"s": StreamConfig(local=str(tmp_path))}, max_seq_len=512)
    loader = build_mlm_dataloader(cfg, _tokens(1000), 16, seed=0, world_size=1, rank=0)
    real = sum(num_tokens_in_batch(b) for b in loader)
    assert real / (len(loader) * 16 * 512) >= 0.99


# ---- mixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_streams(tmp_path_factory) -> Path:
    """Stream a uses ids [5, 500), stream b ids [500, 1000): a token tells its stream."""
    root = tmp_path_factory.mktemp("mix")
    rng = np.random.default_rng(1)
    for name, low, high in [("a", FIRST_ID, 500), ("b", 500, 1000)]:
        lengths = rng.integers(5, 40, size=400)
        write_mds_documents(
            root / name / "train", random_documents(lengths, rng, low=low, high=high)
        )
    return root


def _first_tokens(cfg: MLMLoaderConfig) -> torch.Tensor:
    """The first token of every document piece the loader yields in one epoch."""
    loader = build_mlm_dataloader(cfg, _tokens(1000), 4, seed=0, world_size=1, rank=0)
    return torch.cat([b["input_ids"][:, 1:][b["input_ids"][:, :-1] == 1] for b in _rows(loader)])


def test_mixture_proportions(two_streams):
    streams = {
        "a": StreamConfig(local=str(two_streams / "a"), proportion=0.8),
        "b": StreamConfig(local=str(two_streams / "b"), proportion=0.2),
    }
    cfg = MLMLoaderConfig(
        streams=streams, max_seq_len=SEQ, mlm_probability=0.0, drop_last=False, epoch_size=500
    )
    firsts = _first_tokens(cfg)
    assert int((firsts < 500).sum()) == 400  # 80% of the 500 documents of an epoch
    assert int((firsts >= 500).sum()) == 100


def test_mixture_repeat_and_choose(two_streams):
    streams = {
        "a": StreamConfig(local=str(two_streams / "a"), choose=100),
        "b": StreamConfig(local=str(two_streams / "b"), repeat=1.5),
    }
    cfg = MLMLoaderConfig(streams=streams, max_seq_len=SEQ, mlm_probability=0.0, drop_last=False)
    firsts = _first_tokens(cfg)
    assert int((firsts < 500).sum()) == 100
    assert int((firsts >= 500).sum()) == 600


# ---- batch-size warmup ----------------------------------------------------------------------


def test_batch_schedule_ramps_to_the_target():
    warmup = BatchSizeWarmup(start_batch_size=8, warmup_tokens=64 * 128 * 40)
    schedule = BatchSchedule(64, world_size=4, max_seq_len=128, warmup=warmup)
    sizes = [schedule.global_size(t) for t in range(200)]
    assert sizes[0] == 8
    assert all(s % 4 == 0 for s in sizes)
    assert sizes == sorted(sizes)
    assert sizes[-1] == 64 and 8 < len(schedule.warmup_sizes) < 200
    for t, size in enumerate(schedule.warmup_sizes):  # linear in tokens seen, up to rounding
        exact = 8 + 56 * schedule.rows_before(t) * 128 / warmup.warmup_tokens
        assert exact - 1 < size < exact + 4
    assert sum(schedule.warmup_sizes[:-1]) * 128 < warmup.warmup_tokens  # ends on time
    assert all(schedule.rows_before(t) == sum(sizes[:t]) for t in range(200))


def test_batch_schedule_rounds_up_to_the_world_size():
    schedule = BatchSchedule(32, world_size=8, max_seq_len=16, warmup=BatchSizeWarmup(1, 16 * 200))
    assert schedule.global_size(0) == 8
    assert BatchSchedule(32, 8, 16).warmup_batches == 0


def test_loader_batch_sizes_follow_the_warmup(unique_stream):
    root, docs = unique_stream
    warmup = BatchSizeWarmup(start_batch_size=1, warmup_tokens=SEQ * 40)
    loader = build_mlm_dataloader(
        _config(root),
        _tokens(_vocab(docs)),
        8,
        seed=0,
        world_size=1,
        rank=0,
        batch_size_warmup=warmup,
    )
    sizes = [num_samples_in_batch(b) for b in loader]
    schedule = BatchSchedule(8, 1, SEQ, warmup)
    assert sizes == [schedule.global_size(t) for t in range(len(sizes))]
    assert sizes[0] == 1 and sizes[-1] == 8 and sizes == sorted(sizes)


def test_remote_stream_is_cached_locally(unique_stream, tmp_path):
    root, docs = unique_stream
    tokens = _tokens(_vocab(docs))
    cache = tmp_path / "cache"
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(cache), remote=str(root))},
        max_seq_len=SEQ,
        packing_window=64,
        mlm_probability=0.0,
    )
    remote = list(build_mlm_dataloader(cfg, tokens, 4, seed=0, world_size=1, rank=0))
    local = list(build_mlm_dataloader(_config(root), tokens, 4, seed=0, world_size=1, rank=0))
    assert all(
        torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(remote, local, strict=True)
    )
    assert (cache / "train" / "doc_lengths.npy").is_file()  # planned from lengths, not by reading
    assert list((cache / "train").glob("shard.*.mds"))


_FD_PROBE = """
import gc, sys
from pathlib import Path
from modernbert.data import MLMLoaderConfig, StreamConfig, build_mlm_dataloader
from modernbert.data.tokenizer import TokenSpec

root, vocab, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = MLMLoaderConfig(streams={"s": StreamConfig(local=root)}, max_seq_len=seq,
                      packing_window=64, mlm_probability=0.0)
tokens = TokenSpec(cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4),
                   vocab_size=vocab)

def open_fds():
    gc.collect()
    return len(list(Path("/proc/self/fd").iterdir()))

build_mlm_dataloader(cfg, tokens, 4, seed=0, world_size=1, rank=0)
before = open_fds()
for _ in range(5):
    next(iter(build_mlm_dataloader(cfg, tokens, 4, seed=0, world_size=1, rank=0)))
print(before, open_fds())
"""


_HOLD_DATASET = """
import sys, time
from modernbert.data import MLMLoaderConfig, StreamConfig
from modernbert.data.streams import DocumentSource
source = DocumentSource(MLMLoaderConfig(streams={"s": StreamConfig(local=sys.argv[1])}))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_dropped_loaders_release_their_shared_memory(unique_stream):
    # A fresh interpreter: streaming keeps process-wide state (blocks of other datasets opened
    # earlier in the same process) that would blur the descriptor count. streaming's shared
    # memory is machine-wide, so another process reading MDS shards is always running here
    # (the holder): the count must not depend on what else runs on the machine.
    root, docs = unique_stream
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_DATASET, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        out = subprocess.run(
            [sys.executable, "-c", _FD_PROBE, str(root), str(_vocab(docs)), str(SEQ)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    before, after = map(int, out.stdout.split()[-2:])
    assert after <= before  # streaming alone keeps ~12 more descriptors per dataset
