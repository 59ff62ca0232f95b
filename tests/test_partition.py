"""Partitioned conversion + merge: the same corpus as one machine, resumable, remote roots."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from modernbert.data import MLMLoaderConfig, StreamConfig, build_mlm_dataloader
from modernbert.data.flat import TENSOR_KEYS, layout_of
from modernbert.data.prep.documents import Document, Skipped
from modernbert.data.prep.inputs import DocumentList, iter_items, make_sources
from modernbert.data.prep.merge import merge_parts
from modernbert.data.prep.partition import Partition, assign, iter_part, plan_units
from modernbert.data.prep.readers import ReadOptions, jsonl_ranges, read_jsonl
from modernbert.data.prep.to_mds import convert
from modernbert.data.tokenizer import TokenSpec, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
SPLIT_BYTES = 1500  # small, so the test files are cut into several ranges
N = 3


def text(i: int) -> str:
    return f"document {i} says " + "word " * (3 + i % 11) + ("\n    indented" if i % 3 else "")


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer([text(i) for i in range(200)], vocab_size=384, output_dir=out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with small files, a large JSONL and a Parquet file of several row groups, and
    files that are skipped; plus a gzip JSONL too large for one part and not splittable."""
    root = tmp_path_factory.mktemp("corpus") / "data"
    (root / "sub").mkdir(parents=True)
    for i in range(12):
        (root / "sub" / f"f{i:02d}.txt").write_text(text(1000 + i) * (1 + i % 4))
    (root / "empty.md").write_text("  \n")
    (root / "image.png").write_bytes(b"\x89PNG")
    lines = [json.dumps({"text": text(i)}) if i % 17 else "" for i in range(400)]
    lines[5] = json.dumps({"text": ""})  # an empty record: skipped, counted once
    (root / "big.jsonl").write_text("\n".join(lines) + "\n")
    table = pa.table({"text": [text(2000 + i) for i in range(120)]})
    pq.write_table(table, root / "rows.parquet", row_group_size=20)
    import gzip

    with gzip.open(root / "packed.jsonl.gz", "wt", compresslevel=0) as f:  # > SPLIT_BYTES
        for i in range(150):
            f.write(json.dumps({"text": text(3000 + i) * 3}) + "\n")
    return root


def items_key(item) -> str:
    return item.key if isinstance(item, Document) else f"skip:{item.reason}:{item.where}"


def test_parts_cover_every_item_once_and_balance_the_bytes(corpus: Path) -> None:
    sources = make_sources([corpus])
    whole = Counter(items_key(i) for i in iter_items(sources))
    parts = [Counter(items_key(i) for i in iter_part(sources, Partition(N, p), SPLIT_BYTES))
             for p in range(N)]  # fmt: skip
    assert sum(parts, Counter()) == whole
    assert all(len(p) > 0 for p in parts)
    units = plan_units(sources, SPLIT_BYTES)
    assert any("big.jsonl[" in u.name for u in units)  # cut into byte ranges
    assert any("rows.parquet[" in u.name for u in units)  # cut into row-group runs
    assert [u.name.endswith("packed.jsonl.gz") for u in units if u.shared] == [True]
    owned = [sum(u.nbytes for u in assign(units, Partition(N, p)) if not u.shared)
             for p in range(N)]  # fmt: skip
    biggest = max(u.nbytes for u in units if not u.shared)
    assert max(owned) - min(owned) <= 2 * biggest  # balanced to about a unit


def test_jsonl_ranges_read_each_line_once_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    records = [{"text": f"line {i} " + "x" * (i % 13)} for i in range(60)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    whole = [(d.key, d.text) for d in read_jsonl(path, "s", "x", ReadOptions())]
    size = path.stat().st_size
    line_starts = [0, *(i + 1 for i, b in enumerate(path.read_bytes()) if b == ord("\n"))]
    for cuts in ([0, 7, 300, line_starts[20], line_starts[20] + 1, size], [0, 1, size]):
        ranges = list(pairwise(cuts))
        got = [(d.key, d.text) for a, b in ranges for d in read_jsonl(path, "s", "x",
               ReadOptions(), a, b)]  # fmt: skip
        assert got == whole
    ranges = jsonl_ranges(path, -(-size // 4))
    assert ranges is not None and len(ranges) == 4
    assert ranges[0][0] == 0 and ranges[-1][1] == size and sum(r[2] for r in ranges) == size


def test_part_index_from_the_scheduler() -> None:
    assert Partition.resolve(4, None, {"SLURM_ARRAY_TASK_ID": "2"}) == Partition(4, 2)
    assert Partition.resolve(4, None, {"JOB_COMPLETION_INDEX": "3"}) == Partition(4, 3)
    assert Partition.resolve(4, 1, {"SLURM_ARRAY_TASK_ID": "2"}) == Partition(4, 1)
    with pytest.raises(ValueError, match="needs --part I or one of SLURM_ARRAY_TASK_ID"):
        Partition.resolve(4, None, {})
    with pytest.raises(ValueError, match=r"SLURM_ARRAY_TASK_ID=4 is outside \[0, 4\)"):
        Partition.resolve(4, None, {"SLURM_ARRAY_TASK_ID": "4"})
    with pytest.raises(ValueError, match="part must be in"):
        Partition(2, 5)


def read_docs(out: Path | str, split: str) -> Counter:
    from streaming import StreamingDataset

    from modernbert.data.streams import release_shared_memory

    ds = StreamingDataset(local=str(out), split=split, shuffle=False, batch_size=1)
    try:
        docs = Counter((s["source"], tuple(s["input_ids"].tolist())) for s in ds)
    finally:
        release_shared_memory(ds, os.getpid())
    lengths = np.load(Path(out) / split / "doc_lengths.npy")
    assert lengths.dtype == np.uint32 and int(lengths.sum()) == sum(
        len(ids) * n for (_, ids), n in docs.items()
    )
    return docs


def counts(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "config"}


def convert_parts(corpus: Path, tok, out: Path | str, parts=range(N)):
    return [
        convert([corpus], tok, out, val_fraction=0.2, split_bytes=SPLIT_BYTES, num_parts=N,
                part=p, shard_bytes=4096)
        for p in parts
    ]  # fmt: skip


@pytest.fixture(scope="module")
def one_run(corpus: Path, tok, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "out"
    convert([corpus], tok, out, val_fraction=0.2, shard_bytes=4096)
    return out


def loader(out: Path, tok, **kw):
    cfg = MLMLoaderConfig(
        streams={"m": StreamConfig(local=str(out), split="train", **kw)},
        max_seq_len=32,
        packing_window=40,
        drop_last=False,
    )
    return build_mlm_dataloader(cfg, TokenSpec.from_tokenizer(tok), 4, seed=3, world_size=1, rank=0)


def test_merged_parts_equal_one_machine(corpus: Path, tok, one_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    summaries = convert_parts(corpus, tok, out)
    assert all(s.documents > 0 for s in summaries)
    merged = merge_parts(out)
    written = {
        f: f.read_bytes() for f in out.rglob("*") if f.is_file() and ".row_index" not in str(f)
    }
    assert merge_parts(out).to_dict() == merged.to_dict()  # merging again changes nothing
    assert {f: f.read_bytes() for f in written} == written
    one = json.loads((one_run / "summary.json").read_text())
    assert counts(merged.to_dict()) == counts(one)
    assert counts(json.loads((out / "summary.json").read_text())) == counts(one)
    assert merged.config["num_parts"] == N and merged.config["input_ids_dtype"] == "uint16"
    for split in ("train", "val"):  # same documents in the same split, same tokens
        assert read_docs(out, split) == read_docs(one_run, split)

    # The loader reads the merged output like a one-machine one: same real tokens per epoch,
    # and a resume yields exactly the uninterrupted batches.
    def epoch_tokens(folder: Path) -> int:
        return sum(layout_of(b).num_tokens for b in loader(folder, tok))

    assert epoch_tokens(out) == epoch_tokens(one_run)
    reference = list(loader(out, tok))
    first = loader(out, tok)
    for _ in zip(range(7), first, strict=False):
        pass
    state = first.dataset.state_dict()
    resumed = loader(out, tok)
    resumed.dataset.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(reference) - 7
    assert all(torch.equal(a[k], b[k]) for a, b in zip(rest, reference[7:]) for k in TENSOR_KEYS)


KILLER = """
import os, signal, sys
from modernbert.data.prep import to_mds as conv
conv.BATCH_DOCS = 8
real = conv._batches
def dying(items, summary):
    for i, batch in enumerate(real(items, summary)):
        if i == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        yield batch
conv._batches = dying
conv.convert([sys.argv[1]], sys.argv[2], sys.argv[3], val_fraction=0.2, split_bytes={split},
             num_parts={n}, part=1, shard_bytes=512)
"""


def test_killed_part_is_never_merged_and_rerun_converts_only_it(
    corpus: Path, tok, one_run: Path, tmp_path: Path
) -> None:
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(str(tok_dir))
    out = tmp_path / "parts"
    convert_parts(corpus, tok, out, parts=[0, 2])
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER.format(split=SPLIT_BYTES, n=N)))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, str(script), str(corpus), str(tok_dir), str(out)], env=env, timeout=120
    )
    assert done.returncode == -9  # killed mid-way, shards of part 1 half written
    assert list((out / "parts").glob("1.tmp-*/train/shard.*"))
    assert not (out / "parts" / "1").exists()
    with pytest.raises(ValueError, match=r"1 of 3 parts are not complete.*: 1;"):
        merge_parts(out)
    assert not (out / "train" / "index.json").exists()

    def stamps(part: int) -> dict[str, int]:
        files = [*out.glob(f"*/part-{part}/*"), out / "parts" / str(part) / "summary.json"]
        return {str(f): f.stat().st_mtime_ns for f in files}

    before = {p: stamps(p) for p in (0, 2)}
    rerun = convert_parts(corpus, tok, out)  # the whole array again, as after a failed task
    assert {p: stamps(p) for p in (0, 2)} == before  # completed parts untouched
    assert rerun[1].documents > 0
    merged = merge_parts(out)
    assert counts(merged.to_dict()) == counts(json.loads((one_run / "summary.json").read_text()))
    for split in ("train", "val"):
        assert read_docs(out, split) == read_docs(one_run, split)


def test_parts_must_share_settings_and_merge_needs_parts(corpus: Path, tok, tmp_path) -> None:
    out = tmp_path / "parts"
    convert_parts(corpus, tok, out, parts=[0])
    with pytest.raises(ValueError, match="written by parts with other settings"):
        convert([corpus], tok, out, val_fraction=0.3, split_bytes=SPLIT_BYTES, num_parts=N, part=1)
    with pytest.raises(FileNotFoundError, match="not the output of a partitioned conversion"):
        merge_parts(tmp_path / "nothing")
    with pytest.raises(ValueError, match="max_docs/max_bytes"):
        convert([corpus], tok, tmp_path / "x", num_parts=2, part=0, max_docs=3)


def test_remote_root_parts_merge_and_load(corpus: Path, tok, one_run: Path, tmp_path) -> None:
    remote = tmp_path / "bucket" / "data"
    url = f"file://{remote}"
    convert_parts(corpus, tok, url)
    assert (remote / "parts" / "1" / "summary.json").is_file()
    assert list((remote / "train" / "part-2").glob("shard.*"))
    merged = merge_parts(url)
    assert counts(merged.to_dict()) == counts(json.loads((one_run / "summary.json").read_text()))
    assert read_docs(remote, "train") == read_docs(one_run, "train")
    # The loader streams it from the "remote" into a local cache, as from an object store.
    cache = tmp_path / "cache"
    batches = list(loader(cache, tok, remote=str(remote)))
    assert sum(layout_of(b).num_tokens for b in batches) == sum(
        layout_of(b).num_tokens for b in loader(one_run, tok)
    )
    # A one-machine conversion to a remote root, and its refusal to overwrite.
    single = f"file://{tmp_path / 'bucket' / 'single'}"
    docs = DocumentList([Document(text(i), "mem", "text", f"k{i}") for i in range(30)])
    convert([docs], tok, single, val_fraction=0.2)
    assert read_docs(tmp_path / "bucket" / "single", "train")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert([docs], tok, single)
    with pytest.raises(ValueError, match="unknown scheme 'ftp'"):
        convert([docs], tok, "ftp://host/x")


def test_cli_parts_from_slurm_and_merge(
    corpus: Path, tok, one_run: Path, tmp_path, monkeypatch, capsys
) -> None:
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(str(tok_dir))
    out = tmp_path / "cli"
    args = ["--input", str(corpus), "--tokenizer", str(tok_dir), "--output", str(out),
            "--num-parts", str(N), "--split-bytes", str(SPLIT_BYTES), "--val-fraction", "0.2",
            "--no-progress"]  # fmt: skip
    convert_cli = runpy.run_path(str(REPO / "data_prep" / "convert_to_mds.py"))["main"]
    merge_cli = runpy.run_path(str(REPO / "data_prep" / "merge_mds.py"))["main"]
    for task in range(N):  # one command line for every task of the array
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        convert_cli(args)
        if task == 0:
            with pytest.raises(ValueError, match="2 of 3 parts are not complete"):
                merge_cli([str(out)])
    merge_cli([str(out)])
    assert "merged 3 parts" in capsys.readouterr().out
    assert read_docs(out, "val") == read_docs(one_run, "val")


def test_skip_notes_of_shared_units_are_counted_once(tmp_path: Path) -> None:
    items = [Skipped("mem", "empty", f"w{i}") for i in range(10)]
    items += [Document(text(i), "mem", "text", f"k{i}") for i in range(20)]
    source = DocumentList(items)
    got = [i for p in range(N) for i in iter_part([source], Partition(N, p))]
    assert sorted(map(items_key, got)) == sorted(map(items_key, items))


def test_overwrite_converts_a_completed_part_again(corpus: Path, tok, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    (first,) = convert_parts(corpus, tok, out, parts=[1])
    marker = out / "parts" / "1" / "summary.json"
    stamp = marker.stat().st_mtime_ns
    assert convert_parts(corpus, tok, out, parts=[1])[0].to_dict() == first.to_dict()
    assert marker.stat().st_mtime_ns == stamp  # skipped
    again = convert([corpus], tok, out, val_fraction=0.2, split_bytes=SPLIT_BYTES, num_parts=N,
                    part=1, shard_bytes=4096, overwrite=True)  # fmt: skip
    assert marker.stat().st_mtime_ns != stamp and again.to_dict() == first.to_dict()
