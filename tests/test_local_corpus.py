"""The built-in corpus: real code and prose from this machine, capped, reproducible."""

from __future__ import annotations

from pathlib import Path

from modernbert.data.prep.documents import Document, Skipped
from modernbert.data.prep.local_corpus import (
    CODE_SOURCE,
    DOCSTRING_SOURCE,
    LocalCorpus,
    build_local_corpus,
    docstrings_document,
    package_roots,
)
from modernbert.data.prep.to_mds import convert
from modernbert.data.tokenizer import train_tokenizer

SMALL = ("stdlib", "json", "tokenizers")


def test_capped_build_has_code_and_prose() -> None:
    docs = build_local_corpus(packages=SMALL, max_docs=40)
    assert len(docs) == 40
    languages = {d.language for d in docs}
    assert {"python", "text"} <= languages
    sources = {d.source for d in docs}
    assert {CODE_SOURCE, DOCSTRING_SOURCE} <= sources
    assert any("def " in d.text for d in docs if d.language == "python")
    # Round-robin: every package contributes even under a tight cap.
    assert {d.key.split("/")[1] for d in docs} == set(SMALL)
    assert len({d.key for d in docs}) == len(docs)
    assert len({d.text for d in docs}) == len(docs)  # duplicates dropped


def test_build_is_reproducible_and_byte_capped() -> None:
    first = build_local_corpus(packages=SMALL, max_bytes=300_000)
    again = build_local_corpus(packages=SMALL, max_bytes=300_000)
    assert [d.key for d in first] == [d.key for d in again]
    sizes = [len(d.text.encode("utf-8")) for d in first]
    assert sum(sizes[:-1]) < 300_000 <= sum(sizes) or sum(sizes) < 300_000


def test_missing_package_is_skipped_not_fatal() -> None:
    items = list(LocalCorpus(packages=("no_such_package_xyz", "json"), max_docs=3))
    assert Skipped("local", "not_installed", "no_such_package_xyz") in items
    assert sum(isinstance(i, Document) for i in items) == 3
    assert package_roots("no_such_package_xyz") == []
    assert package_roots("json")[0].name == "json"


def test_docstrings_document() -> None:
    source = '''"""Module docs that are long enough."""


class Thing:
    """A thing with a documented purpose."""

    def run(self):
        """Run the thing, then report what happened."""

    def short(self):
        """Tiny."""
'''
    prose = docstrings_document(source, "pkg.mod")
    assert prose is not None
    assert prose.startswith("pkg.mod\n\nModule docs that are long enough.")
    assert "pkg.mod.Thing\n\nA thing with a documented purpose." in prose
    assert "pkg.mod.Thing.run\n\nRun the thing" in prose
    assert "Tiny" not in prose  # below the minimum length
    assert docstrings_document("def broken(:\n", "m") is None
    assert docstrings_document("x = 1\n", "m") == ""


def test_convert_local_corpus(tmp_path: Path) -> None:
    docs = build_local_corpus(packages=("json",), max_docs=10)
    tok = train_tokenizer((d.text for d in docs), vocab_size=320)
    summary = convert(
        [LocalCorpus(packages=("json", "tokenizers"), max_docs=30)], tok, tmp_path / "out"
    )
    assert summary.documents == 30
    assert {CODE_SOURCE, DOCSTRING_SOURCE} <= set(summary.sources)
    assert summary.sources[CODE_SOURCE].languages["python"] > 0
    assert (tmp_path / "out" / "train" / "index.json").is_file()
