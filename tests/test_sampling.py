"""Tokenizer-training sample: bounded, reproducible, drawn from every part of the inputs."""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest

from modernbert.data.prep.documents import Document, Item
from modernbert.data.prep.inputs import make_sources
from modernbert.data.prep.sampling import sample_texts

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "c"
    root.mkdir()
    for i in range(40):  # 40 files of ~1 kB; sorted order = file number
        (root / f"f{i:02d}.txt").write_text(f"file {i:02d} " * 100)
    lines = [json.dumps({"text": f"line {i:04d} " * 20}) for i in range(500)]
    (root / "zz_big.jsonl").write_text("\n".join(lines) + "\n")  # ~100 kB, sorts last
    return root


def origin(text: str) -> str:
    return text.split()[0] + " " + text.split()[1]


def test_sample_is_bounded_spread_and_reproducible(corpus: Path) -> None:
    sources = make_sources([corpus])
    budget = 30_000  # about a fifth of the corpus
    texts = list(sample_texts(sources, budget, split_bytes=10_000))
    total = sum(len(t.encode()) for t in texts)
    assert budget * 0.8 <= total <= budget + 2_000  # at most one document over
    files = {int(origin(t).split()[1]) for t in texts if t.startswith("file")}
    lines = sorted(int(origin(t).split()[1]) for t in texts if t.startswith("line"))
    assert min(files) < 10 and max(files) >= 30  # not just the first files
    assert lines and min(lines) < 250 < max(lines)  # ranges all over the big file
    assert list(sample_texts(sources, budget, split_bytes=10_000)) == texts
    assert list(sample_texts(sources, budget, seed=1, split_bytes=10_000)) != texts


class Endless:
    """A stream far larger than the sample: the sampler must stop reading it early."""

    name = "endless"

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[Item]:
        while True:
            self.read += 1
            yield Document("x" * 1000, self.name, "text", f"k{self.read}")


def test_sampler_stops_reading_once_it_has_enough() -> None:
    endless = Endless()
    texts = list(sample_texts([endless], 50_000))
    assert len(texts) == 50 and endless.read <= 51
    with pytest.raises(ValueError, match="max_bytes"):
        list(sample_texts([endless], 0))


def test_cli_trains_on_a_sample(corpus: Path, tmp_path: Path, capsys) -> None:
    cli = runpy.run_path(str(REPO / "data_prep" / "train_tokenizer.py"))
    out = tmp_path / "tok"
    cli["main"](["--input", str(corpus), "--max-bytes", "40000", "--vocab-size", "300",
                 "--output", str(out)])  # fmt: skip
    assert (out / "tokenizer.json").is_file() and "saved" in capsys.readouterr().out
