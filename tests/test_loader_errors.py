"""Bad configuration and bad data fail early with errors that name the culprit."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modernbert.data import (
    BatchSizeWarmup,
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
)
from modernbert.data.loader import world_from_environment
from modernbert.data.mds_format import DOC_LENGTHS_FILE
from modernbert.data.synthetic import random_documents, write_mds_documents
from modernbert.data.tokenizer import TokenSpec

TOKENS = TokenSpec(
    cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=100
)


def _write(root: Path, n: int = 120, high: int = 100, **kwargs) -> Path:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=n)
    write_mds_documents(root / "train", random_documents(lengths, rng, low=5, high=high), **kwargs)
    return root


def _build(root: Path, batch: int = 4, **kwargs):
    cfg = MLMLoaderConfig(streams={"web": StreamConfig(local=str(root))}, max_seq_len=32)
    return build_mlm_dataloader(cfg, TOKENS, batch, seed=0, world_size=1, rank=0, **kwargs)


def test_missing_stream_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"stream 'web'.*does not exist"):
        _build(tmp_path / "nowhere")


def test_folder_without_index(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"stream 'web': no index.json in .*train"):
        _build(tmp_path)


def test_corrupt_shard_names_stream_and_file(tmp_path):
    _write(tmp_path, size_limit=1 << 11)
    shard = sorted(glob.glob(str(tmp_path / "train" / "shard.*.mds")))[1]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    with pytest.raises(ValueError, match=rf"stream 'web': document \d+ in shard {shard}"):
        for _ in _build(tmp_path):
            pass


def test_lengths_file_of_another_dataset(tmp_path):
    _write(tmp_path)
    np.save(tmp_path / "train" / DOC_LENGTHS_FILE, np.ones(7, dtype=np.uint32))
    with pytest.raises(
        ValueError, match=r"doc_lengths.npy lists 7 documents but the MDS index has 120"
    ):
        _build(tmp_path)


def test_stale_lengths_file(tmp_path):
    _write(tmp_path)
    path = tmp_path / "train" / DOC_LENGTHS_FILE
    np.save(path, np.load(path) + 1)
    with pytest.raises(ValueError, match=r"stream 'web': document \d+ .* but doc_lengths.npy says"):
        next(iter(_build(tmp_path)))


def test_token_ids_beyond_the_vocabulary(tmp_path):
    _write(tmp_path, high=150)
    with pytest.raises(ValueError, match=r"token id \d+ >= vocab_size 100"):
        for _ in _build(tmp_path):
            pass


def test_missing_lengths_file_falls_back_to_reading(tmp_path):
    with_lengths = _write(tmp_path / "a")
    without = _write(tmp_path / "b", write_lengths=False)
    expected = list(_build(with_lengths))
    with pytest.warns(UserWarning, match="no doc_lengths.npy"):
        loader = _build(without)
    got = list(loader)
    assert all(
        torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(expected, got, strict=True)
    )


def test_batch_must_divide_over_ranks(tmp_path):
    root = _write(tmp_path)
    cfg = MLMLoaderConfig(streams={"web": StreamConfig(local=str(root))}, max_seq_len=32)
    with pytest.raises(ValueError, match=r"global_batch_size \(6\) .* world size \(4\)"):
        build_mlm_dataloader(cfg, TOKENS, 6, seed=0, world_size=4, rank=0)
    with pytest.raises(ValueError, match="rank must be in"):
        build_mlm_dataloader(cfg, TOKENS, 8, seed=0, world_size=4, rank=4)
    with pytest.raises(ValueError, match="start_batch_size"):
        _build(root, batch_size_warmup=BatchSizeWarmup(start_batch_size=8, warmup_tokens=100))


def test_world_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert world_from_environment() == (2, 1)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert world_from_environment() == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_seq_len": 2}, "max_seq_len"),
        ({"mlm_probability": 1.5}, "mlm_probability"),
        ({"mask_replace_prob": 0.95}, "mask_replace_prob"),
        ({"packing_window": 0}, "packing_window"),
        ({"num_workers": -1}, "num_workers"),
        ({"streams": {}}, "streams"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    base = {"streams": {"web": StreamConfig(local="/data")}}
    with pytest.raises(ValueError, match=field):
        MLMLoaderConfig(**{**base, **kwargs})


def test_stream_config_errors():
    with pytest.raises(ValueError, match="at most one of proportion/repeat/choose"):
        StreamConfig(local="/data", proportion=0.5, repeat=2.0)
    with pytest.raises(ValueError, match=r"StreamConfig\.choose"):
        StreamConfig(local="/data", choose=-1)
    with pytest.raises(ValueError, match=r"StreamConfig\.local"):
        StreamConfig(local="")
    with pytest.raises(ValueError, match="start_batch_size"):
        BatchSizeWarmup(start_batch_size=0, warmup_tokens=10)
