"""Conversion to MDS: exact counts, skips by reason, layout, split, determinism, atomicity."""

from __future__ import annotations

import gzip
import json
import os
import runpy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import PreTrainedTokenizerFast

from modernbert.data.prep.documents import Document, Item, SourceError
from modernbert.data.prep.inputs import DocumentList, HFSource
from modernbert.data.prep.to_mds import convert, split_of
from modernbert.data.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
PY = 'def add(a, b):\n\t"""Add."""\n    return a + b\n\n\nprint(add(1,  2))\n'
MD = "# Title\n\nSome *markdown* prose, with ünïcödé.\n\n    indented code\n"
TXT = "Plain text. " * 2000  # a long document (~24 kB): kept whole
JSONL = [{"text": "first record", "id": 1}, {"text": "", "id": 2}, {"text": "third 🙂"}]
PARQUET = ["row zero", None, "row two\nwith two lines"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    out = tmp_path_factory.mktemp("tok")
    texts = [PY, MD, TXT[:400], *(r["text"] for r in JSONL), *filter(None, PARQUET)] * 10
    return train_tokenizer(texts, vocab_size=384, output_dir=out)


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.py").write_text(PY, encoding="utf-8")
    (tree / "b.md").write_text(MD, encoding="utf-8")
    (tree / "sub" / "c.txt").write_text(TXT, encoding="utf-8")
    (tree / "empty.txt").write_text("  \n\n", encoding="utf-8")
    (tree / "binary.txt").write_bytes(b"abc\x00\x01\x02def")
    (tree / "latin1.txt").write_bytes("café olé".encode("latin-1"))
    (tree / "image.png").write_bytes(b"\x89PNG....")
    lines = [json.dumps(r) for r in JSONL[:2]] + ["", json.dumps(JSONL[2])]
    (tree / "sub" / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": PARQUET, "n": [0, 1, 2]}), tree / "e.parquet")
    return tree


# Documents of make_tree in walk order (sorted names, recursively).
EXPECTED = [
    ("a.py", PY, "python"),
    ("b.md", MD, "text"),
    ("e.parquet:0", PARQUET[0], "text"),
    ("e.parquet:2", PARQUET[2], "text"),
    ("sub/c.txt", TXT, "text"),
    ("sub/d.jsonl:1", JSONL[0]["text"], "text"),
    ("sub/d.jsonl:4", JSONL[2]["text"], "text"),
]


def read_split(folder: Path) -> list[dict]:
    from streaming import StreamingDataset

    from modernbert.data.streams import release_shared_memory

    ds = StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    try:
        return [ds[i] for i in range(len(ds))]
    finally:  # streaming keeps its blocks until exit; later datasets would trip over them
        release_shared_memory(ds, os.getpid())


def test_mixed_tree_counts_layout_and_contents(tmp_path: Path, tok) -> None:
    tree = make_tree(tmp_path)
    out = tmp_path / "out"
    summary = convert([tree], tok, out, val_fraction=0.3)

    ids = {key: tok(text, add_special_tokens=False)["input_ids"] for key, text, _ in EXPECTED}
    assert summary.documents == len(EXPECTED)
    assert summary.tokens == sum(len(v) for v in ids.values())
    assert dict(summary.skipped) == {
        "binary": 1,
        "empty": 3,  # empty.txt, the empty JSONL text, the null Parquet row
        "not_utf8": 1,
        "unknown_extension": 1,
    }
    stats = summary.sources["tree"]
    assert stats.languages == {"python": 1, "text": len(EXPECTED) - 1}

    for split in ("train", "val"):
        keys = [k for k, _, _ in EXPECTED if split_of(f"tree/{k}", 0.3) == split]
        samples = read_split(out / split)
        assert [s["input_ids"].tolist() for s in samples] == [ids[k] for k in keys]
        assert all(s["input_ids"].dtype == np.uint16 for s in samples)  # 384 ids fit
        assert all(s["source"] == "tree" for s in samples)
        langs = {k: lang for k, _, lang in EXPECTED}
        assert [s["language"] for s in samples] == [langs[k] for k in keys]
        lengths = np.load(out / split / "doc_lengths.npy")
        assert lengths.dtype == np.uint32
        assert lengths.tolist() == [len(ids[k]) for k in keys]
    assert len(read_split(out / "val")) > 0  # this seed and fraction put docs in both splits

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["documents"] == len(EXPECTED) and on_disk["tokens"] == summary.tokens
    assert on_disk["sources"]["tree"]["skipped"]["empty"] == 3
    assert on_disk["splits"]["train"]["documents"] + on_disk["splits"]["val"]["documents"] == 7
    assert not list(tmp_path.glob("out.tmp-*"))


def test_long_document_is_kept_whole(tmp_path: Path, tok) -> None:
    out = tmp_path / "out"
    (tmp_path / "long.txt").write_text(TXT, encoding="utf-8")
    convert([tmp_path / "long.txt"], tok, out, val_fraction=0.0)
    (sample,) = read_split(out / "train")
    assert tok.decode(sample["input_ids"].tolist()) == TXT
    assert np.load(out / "val" / "doc_lengths.npy").size == 0


def jsonl_records(path: Path, n: int) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"record {i} " * (1 + i % 5), "language": "en"}) + "\n")
    return path


def test_val_fraction_is_honoured(tmp_path: Path, tok) -> None:
    data = jsonl_records(tmp_path / "many.jsonl.gz", 400)
    summary = convert([data], tok, tmp_path / "out", val_fraction=0.25, seed=7)
    expected_val = sum(split_of(f"many.jsonl.gz:{i + 1}", 0.25, 7) == "val" for i in range(400))
    assert summary.splits["val"].documents == expected_val
    assert 70 <= expected_val <= 130
    assert summary.sources["many.jsonl.gz"].languages == {"en": 400}
    other = convert([data], tok, tmp_path / "out2", val_fraction=0.25, seed=8)
    val_seed8 = sum(split_of(f"many.jsonl.gz:{i + 1}", 0.25, 8) == "val" for i in range(400))
    assert other.splits["val"].documents == val_seed8


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_conversion_is_deterministic(tmp_path: Path, tok) -> None:
    tree = make_tree(tmp_path)
    data = jsonl_records(tmp_path / "many.jsonl.gz", 300)
    first = tmp_path / "one"
    convert([tree, data], tok, first, val_fraction=0.1, shard_bytes=2048)
    convert([tree, data], tok, tmp_path / "two", val_fraction=0.1, shard_bytes=2048)
    convert([tree, data], tok, tmp_path / "par", val_fraction=0.1, shard_bytes=2048, workers=2)
    files = snapshot(first)
    assert len([f for f in files if f.startswith("train/shard.")]) > 1  # several shards
    assert snapshot(tmp_path / "two") == files
    assert snapshot(tmp_path / "par") == files


class Exploding:
    """A source that fails after a few documents, like a crash mid-conversion."""

    name = "exploding"

    def __iter__(self) -> Iterator[Item]:
        for i in range(2000):
            yield Document(f"document number {i}", self.name, "text", f"k{i}")
        raise RuntimeError("disk on fire")


def test_interrupted_conversion_leaves_nothing_complete(tmp_path: Path, tok) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert([Exploding()], tok, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone too


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, tok) -> None:
    out = tmp_path / "out"
    docs = DocumentList([Document("hello there", "mem", "text", "k0")])
    convert([docs], tok, out, val_fraction=0.0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert([docs], tok, out)
    more = DocumentList([Document(f"doc {i}", "mem", "text", f"k{i}") for i in range(3)])
    assert convert([more], tok, out, overwrite=True, val_fraction=0.0).documents == 3
    assert len(read_split(out / "train")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_inputs_have_clear_errors(tmp_path: Path, tok) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        convert([tmp_path / "missing_dir"], tok, out)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "x.png").write_bytes(b"1")
    (odd / "y.xyz").write_bytes(b"2")
    with pytest.raises(SourceError, match=r"odd: no files with a usable extension.*\.png"):
        convert([odd], tok, out)
    with pytest.raises(SourceError, match=r"unknown extension '\.png'"):
        convert([odd / "x.png"], tok, out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: invalid JSON"):
        convert([bad], tok, out)
    bad.write_text('{"text": "ok"}\n\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.jsonl:3: no field 'text' \(fields: body\)"):
        convert([bad], tok, out)
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(SourceError, match=r"p\.parquet: no column 'text' \(columns: body\)"):
        convert([tmp_path / "p.parquet"], tok, tmp_path / "out2")
    empty = tmp_path / "empties"
    empty.mkdir()
    (empty / "e.txt").write_text("")
    with pytest.raises(SourceError, match=r"no documents.*'empty': 1"):
        convert([empty], tok, tmp_path / "out3")
    with pytest.raises(ValueError, match="val_fraction"):
        convert([empty], tok, tmp_path / "out4", val_fraction=1.0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["empties", "odd"]


def test_hf_source_spec_and_streaming(tmp_path: Path, tok, monkeypatch) -> None:
    import datasets

    spec = HFSource.from_spec("hf:owner/name:cfg@validation", HFSource("x").options)
    assert (spec.name, spec.config, spec.split) == ("owner/name", "cfg", "validation")
    plain = HFSource.from_spec("hf:wikitext", spec.options)
    assert (plain.name, plain.config, plain.split) == ("wikitext", None, "train")

    calls = []

    def fake_load(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"text": "from the hub"}, {"text": ""}, {"text": "second"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    summary = convert(["hf:owner/name@test"], tok, tmp_path / "out", val_fraction=0.0)
    assert calls == [("owner/name", None, "test", True)]
    assert summary.sources["owner/name"].documents == 2
    assert summary.sources["owner/name"].skipped == {"empty": 1}

    def unreachable(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(SourceError, match="cannot load Hugging Face dataset 'owner/name'"):
        convert(["hf:owner/name"], tok, tmp_path / "out2")


def test_cli_converts_a_folder(tmp_path: Path, tok, capsys) -> None:
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(str(tok_dir))
    tree = make_tree(tmp_path)
    cli = runpy.run_path(str(REPO / "data_prep" / "convert_to_mds.py"))
    argv = ["--input", str(tree), "--tokenizer", str(tok_dir), "--output", str(tmp_path / "o")]
    cli["main"]([*argv, "--workers", "1", "--no-progress", "--val-fraction", "0"])
    printed = capsys.readouterr().out
    assert f"{len(EXPECTED)} documents" in printed and "not_utf8=1" in printed
    assert len(read_split(tmp_path / "o" / "train")) == len(EXPECTED)
