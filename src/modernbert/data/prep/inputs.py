"""Input specs -> sources of documents: local paths, Hugging Face datasets, the local corpus.

A spec is a string: `hf:owner/name[:config][@split]`, `local:[pkg,pkg,...]`, or a path (a
file, or a directory walked recursively in sorted order). Every source is an iterable of
Document/Skipped items in a fixed order, so conversions are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modernbert.data.prep.documents import Document, Item, Skipped, SourceError
from modernbert.data.prep.readers import (
    READERS,
    ReadOptions,
    file_extension,
    reader_for,
    record_item,
)

# Directories never worth reading in a tree of sources.
IGNORED_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn"})


class Source(Protocol):
    """Anything that yields documents and skip notes in a fixed order."""

    name: str

    def __iter__(self) -> Iterator[Item]: ...


@dataclass
class PathSource:
    """A file, or a directory of files picked by extension (optionally restricted)."""

    path: Path
    options: ReadOptions = field(default_factory=ReadOptions)
    extensions: frozenset[str] | None = None  # e.g. {".py", ".md"}; None = every known one

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"input not found: {self.path}")
        if self.extensions is not None:
            unknown = sorted(e for e in self.extensions if e not in READERS)
            if unknown:
                raise ValueError(f"unknown extensions {unknown}; known: {sorted(READERS)}")
        if self.path.is_file() and reader_for(self.path) is None:
            raise SourceError(
                f"{self.path}: unknown extension {file_extension(self.path)!r}; "
                f"known: {' '.join(sorted(READERS))}"
            )
        self.name = self.path.resolve().name

    def _files(self) -> Iterator[Path]:
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS and not d.startswith("."))
            for name in sorted(files):
                yield Path(root) / name

    def listing(self) -> Iterator[tuple[Path, str] | Skipped]:
        """(file, document key prefix) of every file to read, and skip notes, in walk order.

        Raises SourceError (after the walk) if a folder holds no file with a usable extension.
        """
        if self.path.is_file():
            yield self.path, self.name
            return
        read = 0
        unknown: dict[str, int] = {}
        for path in self._files():
            ext = file_extension(path)
            reader = READERS.get(ext)
            if reader is None or (self.extensions is not None and ext not in self.extensions):
                reason = "unknown_extension" if reader is None else "excluded_extension"
                unknown[ext or "(none)"] = unknown.get(ext or "(none)", 0) + 1
                yield Skipped(self.name, reason, str(path))
                continue
            read += 1
            yield path, f"{self.name}/{path.relative_to(self.path).as_posix()}"
        if read == 0:
            found = ", ".join(f"{e} ({n})" for e, n in sorted(unknown.items())) or "no files"
            raise SourceError(f"{self.path}: no files with a usable extension (found: {found})")

    def __iter__(self) -> Iterator[Item]:
        for entry in self.listing():
            if isinstance(entry, Skipped):
                yield entry
                continue
            path, key = entry
            reader = reader_for(path)
            assert reader is not None  # listing() yields readable files only
            yield from reader(path, self.name, key, self.options)


@dataclass
class DocumentList:
    """Documents already in memory (benchmarks, tests, or callers with their own reader)."""

    documents: Sequence[Item]
    name: str = "documents"

    def __iter__(self) -> Iterator[Item]:
        return iter(self.documents)


@dataclass
class HFSource:
    """A Hugging Face dataset, streamed; `datasets` is imported only when one is asked for."""

    name: str
    config: str | None = None
    split: str = "train"
    options: ReadOptions = field(default_factory=ReadOptions)

    @classmethod
    def from_spec(cls, spec: str, options: ReadOptions) -> HFSource:
        rest = spec.removeprefix("hf:")
        rest, _, split = rest.partition("@")
        name, _, config = rest.partition(":")
        if not name:
            raise ValueError(f"bad dataset spec {spec!r}: expected hf:owner/name[:config][@split]")
        return cls(name=name, config=config or None, split=split or "train", options=options)

    def _load(self) -> Iterable[object]:
        try:
            import datasets
        except ImportError as err:  # pragma: no cover - datasets is a dependency
            raise SourceError(f"hf:{self.name} needs the `datasets` package") from err
        try:
            return datasets.load_dataset(self.name, self.config, split=self.split, streaming=True)
        except Exception as err:
            raise SourceError(
                f"cannot load Hugging Face dataset {self.name!r} (config={self.config}, "
                f"split={self.split}): {type(err).__name__}: {err}"
            ) from err

    def __iter__(self) -> Iterator[Item]:
        where = f"hf:{self.name}" + (f":{self.config}" if self.config else "") + f"@{self.split}"
        for i, record in enumerate(self._load()):
            yield record_item(
                record, f"{where} record {i}", self.name, f"{where}#{i}", self.options
            )


def _local_source(spec: str, options: ReadOptions) -> Source:
    from modernbert.data.prep.local_corpus import LocalCorpus

    packages = tuple(p for p in spec.removeprefix("local:").split(",") if p)
    return LocalCorpus(packages=packages) if packages else LocalCorpus()


# Spec prefix -> builder; a spec with no registered prefix is a path.
SOURCE_KINDS: dict[str, Callable[[str, ReadOptions], Source]] = {
    "hf:": HFSource.from_spec,
    "local:": _local_source,
}


def make_source(
    spec: str | Path | Source,
    options: ReadOptions | None = None,
    extensions: Iterable[str] | None = None,
) -> Source:
    """Build the source a spec names (a Source object passes through unchanged)."""
    options = options or ReadOptions()
    if not isinstance(spec, str | Path):
        return spec
    text = str(spec)
    for prefix, build in SOURCE_KINDS.items():
        if isinstance(spec, str) and text.startswith(prefix):
            return build(text, options)
    exts = None if extensions is None else frozenset(_dot(e) for e in extensions)
    return PathSource(Path(text), options, exts)


def _dot(ext: str) -> str:
    ext = ext.lower()
    return ext if ext.startswith(".") else f".{ext}"


def make_sources(
    specs: Sequence[str | Path | Source],
    options: ReadOptions | None = None,
    extensions: Iterable[str] | None = None,
) -> list[Source]:
    """Validate every input up front (missing paths fail before any output is written)."""
    if not specs:
        raise ValueError("no inputs given")
    exts = None if extensions is None else list(extensions)
    return [make_source(s, options, exts) for s in specs]


def iter_items(sources: Iterable[Source]) -> Iterator[Item]:
    for source in sources:
        yield from source


def iter_texts(
    sources: Iterable[Source], max_docs: int | None = None, max_bytes: int | None = None
) -> Iterator[str]:
    """Document texts only, capped; what tokenizer training consumes."""
    for doc in capped_documents(iter_items(sources), max_docs, max_bytes):
        if isinstance(doc, Document):
            yield doc.text


def capped_documents(
    items: Iterable[Item], max_docs: int | None = None, max_bytes: int | None = None
) -> Iterator[Item]:
    """Stop after `max_docs` documents or once `max_bytes` of UTF-8 text have passed."""
    docs = nbytes = 0
    for item in items:
        if isinstance(item, Document):
            if (max_docs is not None and docs >= max_docs) or (
                max_bytes is not None and nbytes >= max_bytes
            ):
                return
            docs += 1
            nbytes += len(item.text.encode("utf-8"))
        yield item
