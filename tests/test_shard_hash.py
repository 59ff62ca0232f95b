"""Shards carry xxh64 digests from conversion and the loader checks them: a single flipped bit
in a token id stops the run with a one-line error naming the shard, where without the check
it would train on silently."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modernbert.data import MLMLoaderConfig, StreamConfig, build_mlm_dataloader
from modernbert.data.shard_hash import SHARD_HASH
from modernbert.data.streams import DocumentSource
from modernbert.data.tokenizer import TokenSpec
from modernbert.errors import DataError, one_line

from conftest import REPO, tiny_recipe, write_recipe


def _flip_a_token_bit(split: Path) -> tuple[int, Path, np.ndarray]:
    """Flip the low bit of one token id inside a shard, in place; return the document, its
    shard and its tokens before the flip."""
    source = DocumentSource(
        MLMLoaderConfig(streams={"s": StreamConfig(local=str(split))}, split=None)
    )
    doc = source.num_documents // 2
    ids = source.read(doc)
    shard = split / "shard.00000.mds"
    for path in sorted(split.glob("shard.*.mds")):
        data = bytearray(path.read_bytes())
        at = data.find(ids.tobytes())
        if at >= 0:
            shard = path
            break
    else:
        raise AssertionError("document bytes not found in any shard")
    data[at + 4 * (len(ids) // 2)] ^= 1
    shard.write_bytes(bytes(data))
    return doc, shard, ids


@pytest.fixture
def corrupted(tiny_corpus, tmp_path) -> tuple[Path, int, Path, np.ndarray]:
    mds = tmp_path / "mds"
    shutil.copytree(tiny_corpus.mds, mds)
    doc, shard, original = _flip_a_token_bit(mds / "train")
    return mds, doc, shard, original


def test_conversion_writes_shard_digests(tiny_corpus):
    index = json.loads((tiny_corpus.mds / "train" / "index.json").read_text())
    assert all(SHARD_HASH in shard["raw_data"]["hashes"] for shard in index["shards"])


def test_flipped_bit_is_caught_and_silent_without_the_check(corrupted):
    mds, doc, shard, original = corrupted
    cfg = {"streams": {"s": StreamConfig(local=str(mds / "train"))}, "split": None}
    unchecked = DocumentSource(MLMLoaderConfig(**cfg, validate_hash=False)).read(doc)
    assert (unchecked != original).sum() == 1  # what would have trained silently
    with pytest.raises(DataError, match=rf"shard {shard} is corrupt: the file's xxh64 digest"):
        DocumentSource(MLMLoaderConfig(**cfg)).read(doc)


def test_corrupt_shard_stops_training_with_one_line(tiny_corpus, corrupted, tmp_path, capsys):
    mds, _, shard, _ = corrupted
    recipe = tiny_recipe(
        tiny_corpus,
        tmp_path / "run",
        eval_loader=None,
        loggers={"jsonl": {}, "console": {}},
        **{"train_loader.streams": {"local": {"local": str(mds), "split": "train"}}},
    )
    spec = importlib.util.spec_from_file_location("main_script", REPO / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main([str(write_recipe(recipe, tmp_path / "run" / "r.yaml"))])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the console logger's lines
    assert last.startswith("error: stream 'local': document") and f"{shard} is corrupt" in last


def test_worker_errors_reach_the_terminal_as_one_line(corrupted):
    # An error raised in a DataLoader worker comes back with the worker's traceback in its
    # text; main.py prints only the original message.
    mds, _, shard, _ = corrupted
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(mds / "train"))},
        split=None,
        max_seq_len=64,
        packing_window=64,
        num_workers=1,
    )
    tokens = TokenSpec(
        cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=512
    )
    with pytest.raises(DataError) as caught:
        for _ in build_mlm_dataloader(cfg, tokens, 4, seed=0, world_size=1, rank=0):
            pass
    assert "Traceback" in str(caught.value)
    line = one_line(caught.value)
    assert line.startswith("stream 's': document") and f"{shard} is corrupt" in line
