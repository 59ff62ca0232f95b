"""Commands that write a folder never destroy what they did not make: an output that is,
contains or lies inside an input is refused, an existing folder is replaced only with
--overwrite and only when it is a previous output of the same kind, and a killed
conversion's temp folder is removed by the next run."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from modernbert.data.prep.to_mds import convert

from conftest import REPO

TEXT = "def add(a, b):\n    return a + b\n" * 20


def _script(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _raw(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"m{i}.py").write_text(TEXT + f"x = {i}\n")
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("where", ["same", "parent"])
def test_conversion_refuses_an_output_over_its_input(tiny_corpus, tmp_path, where):
    raw = _raw(tmp_path / "data" / "raw")
    output = raw if where == "same" else raw.parent
    before = _files(tmp_path)
    with pytest.raises(FileExistsError, match="is or contains the input"):
        convert([str(raw)], str(tiny_corpus.tokenizer), output, overwrite=True)
    assert _files(tmp_path) == before  # nothing deleted, nothing written


def test_conversion_refuses_an_output_inside_its_input(tiny_corpus, tmp_path):
    raw = _raw(tmp_path / "raw")
    with pytest.raises(FileExistsError, match="lies inside the input"):
        convert([str(raw)], str(tiny_corpus.tokenizer), raw / "mds")


def test_overwrite_replaces_only_a_previous_conversion(tiny_corpus, tmp_path):
    raw = _raw(tmp_path / "raw")
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a previous MDS conversion output"):
        convert([str(raw)], str(tiny_corpus.tokenizer), precious, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "years of work"
    out = tmp_path / "mds"
    convert([str(raw)], str(tiny_corpus.tokenizer), out, val_fraction=0.0)
    convert([str(raw)], str(tiny_corpus.tokenizer), out, val_fraction=0.0, overwrite=True)
    assert (out / "summary.json").is_file()


def test_killed_conversions_temp_folder_is_removed_next_run(tiny_corpus, tmp_path):
    raw = _raw(tmp_path / "raw")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the killed conversion
    leftover = tmp_path / f"mds.tmp-{dead.pid}-abcd1234"
    (leftover / "train").mkdir(parents=True)
    (leftover / "train" / "shard.00000.mds").write_bytes(b"half written")
    alive = tmp_path / "mds.tmp-1-abcd1234"  # pid 1 runs: a conversion still going
    alive.mkdir()
    convert([str(raw)], str(tiny_corpus.tokenizer), tmp_path / "mds", val_fraction=0.0)
    assert not leftover.exists()
    assert alive.exists()


def test_tokenizer_cli_refuses_an_existing_folder(tmp_path):
    train_tokenizer = _script("data_prep/train_tokenizer.py")
    raw = _raw(tmp_path / "raw")
    out = tmp_path / "tok"
    args = ["--input", str(raw), "--vocab-size", "300", "--output", str(out)]
    train_tokenizer(args)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        train_tokenizer(args)
    train_tokenizer([*args, "--overwrite"])  # a previous tokenizer: replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    args = ["--input", str(raw), "--vocab-size", "300", "--output", str(other), "--overwrite"]
    with pytest.raises(FileExistsError, match="not a previous tokenizer output"):
        train_tokenizer(args)
    assert _files(other) == ["keep.txt"]


def test_export_refuses_an_existing_folder(tmp_path):
    export = _script("scripts/export_hf.py")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"")  # never read: the output is refused first
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export(["--checkpoint", str(checkpoint), "--output", str(out)])
    with pytest.raises(FileExistsError, match="not a previous Hugging Face model output"):
        export(["--checkpoint", str(checkpoint), "--output", str(out), "--overwrite"])
    assert _files(out) == ["keep.txt"]
