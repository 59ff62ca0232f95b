"""File readers, picked by extension: plain text, code (language recorded), JSONL and Parquet.

A file that cannot become a document (empty, binary, not UTF-8) is skipped with a reason; a
file that is malformed (bad JSON line, missing text field) is an error naming file and line,
because silently dropping part of a dataset hides real problems.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

from modernbert.data.prep.documents import TEXT, Document, Item, Skipped, SourceError

PROSE_EXTENSIONS = (".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex")
CODE_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cu": "cuda",
    ".cuh": "cuda",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".cs": "csharp",
    ".swift": "swift",
    ".rb": "ruby",
    ".php": "php",
    ".lua": "lua",
    ".jl": "julia",
    ".r": "r",
    ".sql": "sql",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".html": "html",
    ".css": "css",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
}
RECORD_EXTENSIONS = (".jsonl", ".jsonl.gz", ".ndjson", ".parquet")
_COUNT_CHUNK = 1 << 24  # bytes read at a time when counting lines


@dataclass(frozen=True)
class ReadOptions:
    """How records are read. A record's optional `language` field (a string) is kept."""

    text_field: str = "text"
    language_field: str = "language"


Reader = Callable[[Path, str, str, ReadOptions], Iterator[Item]]


def decode_text(data: bytes) -> tuple[str, str | None]:
    """(text, None), or ("", reason) when the bytes are no document: empty, binary, not_utf8."""
    if b"\x00" in data:
        return "", "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "", "not_utf8"
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return "", "empty"
    return text, None


def read_file_document(path: Path, source: str, key: str, language: str) -> Item:
    """One file -> one whole document (or a Skipped with the reason)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return Skipped(source, "unreadable", f"{path}: {err.strerror}")
    text, reason = decode_text(data)
    if reason is not None:
        return Skipped(source, reason, str(path))
    return Document(text=text, source=source, language=language, key=key)


def record_item(record: object, where: str, source: str, key: str, options: ReadOptions) -> Item:
    if not isinstance(record, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if options.text_field not in record:
        fields = ", ".join(sorted(map(str, record))) or "none"
        raise SourceError(f"{where}: no field {options.text_field!r} (fields: {fields})")
    text = record[options.text_field]
    if text is None or (isinstance(text, str) and not text.strip()):
        return Skipped(source, "empty", where)
    if not isinstance(text, str):
        raise SourceError(
            f"{where}: field {options.text_field!r} is {type(text).__name__}, not a string"
        )
    language = record.get(options.language_field)
    language = language if isinstance(language, str) and language else TEXT
    return Document(text=text, source=source, language=language, key=key)


def read_jsonl(
    path: Path,
    source: str,
    key: str,
    options: ReadOptions,
    start: int = 0,
    stop: int | None = None,
    number_lines: bool = True,
) -> Iterator[Item]:
    """One document per line; blank lines are ignored, a bad line is an error naming it.

    With a byte range, only the lines that *begin* in [start, stop) are read (plain files
    only), so ranges that tile a file read every line exactly once, with the same line
    numbers (and so the same document keys) as reading the whole file. `number_lines=False`
    skips counting the lines before `start` (for samples that need no keys): lines are then
    numbered from the range's first one.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        pos, lineno = (0, 1) if start == 0 else _first_line_at(f, start, number_lines)
        while stop is None or pos < stop:
            raw = f.readline()
            if not raw:
                break
            where, number = f"{path}:{lineno}", lineno
            pos, lineno = pos + len(raw), lineno + 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise SourceError(f"{where}: line is not valid UTF-8 ({err.reason})") from err
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceError(f"{where}: invalid JSON ({err.msg})") from err
            yield record_item(record, where, source, f"{key}:{number}", options)


def _first_line_at(f: BinaryIO, start: int, count: bool = True) -> tuple[int, int]:
    """Seek to the first line that begins at or after byte `start`: (its offset, its number).

    The line number costs a count of the newlines before it: a sequential read at disk speed,
    small next to tokenizing the range (without `count`, a seek; the number is then 1).
    """
    newlines, read, last = 0, 0, b""
    if not count:
        f.seek(start - 1)
        read, last = start, f.read(1)
    while read < start:
        chunk = f.read(min(_COUNT_CHUNK, start - read))
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        read += len(chunk)
        last = chunk[-1:]
    if last != b"\n":  # `start` is inside a line: it belongs to the range before
        rest = f.readline()
        read += len(rest)
        newlines += rest.endswith(b"\n")
    return read, newlines + 1


def read_parquet(
    path: Path,
    source: str,
    key: str,
    options: ReadOptions,
    start: int = 0,
    stop: int | None = None,
    number_lines: bool = True,
) -> Iterator[Item]:
    """One document per row of the text column, read in batches to bound memory.

    `start`/`stop` select row groups; rows keep their number in the whole file (the key),
    which the file's metadata gives for free (so `number_lines` changes nothing here).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    field = options.text_field
    if field not in names:
        raise SourceError(f"{path}: no column {field!r} (columns: {', '.join(names)})")
    if not pa.types.is_string(pf.schema_arrow.field(field).type) and not pa.types.is_large_string(
        pf.schema_arrow.field(field).type
    ):
        raise SourceError(
            f"{path}: column {field!r} has type {pf.schema_arrow.field(field).type}, not string"
        )
    columns = [field] + ([options.language_field] if options.language_field in names else [])
    groups = list(range(start, pf.num_row_groups if stop is None else stop))
    row = sum(pf.metadata.row_group(g).num_rows for g in range(start))
    for batch in pf.iter_batches(batch_size=1024, columns=columns, row_groups=groups):
        for record in batch.to_pylist():
            yield record_item(record, f"{path}: row {row}", source, f"{key}:{row}", options)
            row += 1


def jsonl_ranges(path: Path, target_bytes: int) -> list[tuple[int, int, int]] | None:
    """Byte ranges (start, stop, bytes) of about `target_bytes` tiling a plain JSONL file."""
    if path.name.endswith(".gz"):
        return None  # a gzip stream cannot be entered in the middle
    size = path.stat().st_size
    n = max(1, -(-size // target_bytes))
    cuts = [size * i // n for i in range(n + 1)]
    return [(a, b, b - a) for a, b in pairwise(cuts)]


def parquet_ranges(path: Path, target_bytes: int) -> list[tuple[int, int, int]] | None:
    """Runs of whole row groups (start, stop, compressed bytes) of about `target_bytes`."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    sizes = [
        sum(meta.row_group(g).column(c).total_compressed_size for c in range(meta.num_columns))
        for g in range(meta.num_row_groups)
    ]
    ranges: list[tuple[int, int, int]] = []
    first, acc = 0, 0
    for g, size in enumerate(sizes):
        acc += size
        if acc >= target_bytes or g == len(sizes) - 1:
            ranges.append((first, g + 1, acc))
            first, acc = g + 1, 0
    return ranges or [(0, 0, 0)]


def _read_single(language: str) -> Reader:
    def read(path: Path, source: str, key: str, options: ReadOptions) -> Iterator[Item]:
        yield read_file_document(path, source, key, language)

    return read


def _build_registry() -> dict[str, Reader]:
    registry: dict[str, Reader] = {ext: _read_single(TEXT) for ext in PROSE_EXTENSIONS}
    registry.update({ext: _read_single(lang) for ext, lang in CODE_LANGUAGES.items()})
    registry.update({".jsonl": read_jsonl, ".jsonl.gz": read_jsonl, ".ndjson": read_jsonl})
    registry[".parquet"] = read_parquet
    return registry


# Extension (lower case, ".jsonl.gz" style compounds included) -> reader.
READERS: dict[str, Reader] = _build_registry()
# Readers that can read part of a file: extension -> the ranges a file splits into. The
# reader takes (start, stop) of one range as extra arguments.
RangeSplitter = Callable[[Path, int], list[tuple[int, int, int]] | None]
SPLITTERS: dict[str, RangeSplitter] = {
    ".jsonl": jsonl_ranges,
    ".ndjson": jsonl_ranges,
    ".jsonl.gz": jsonl_ranges,
    ".parquet": parquet_ranges,
}


def file_extension(path: Path) -> str:
    """The registry key of a file: the longest known compound suffix, else the last suffix."""
    name = path.name.lower()
    for ext in (e for e in READERS if e.count(".") > 1):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def reader_for(path: Path) -> Reader | None:
    return READERS.get(file_extension(path))
