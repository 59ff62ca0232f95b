"""What every source yields: whole documents, or a note that an input was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass

TEXT = "text"  # the language of prose; code documents carry their language name


class SourceError(ValueError):
    """Bad input that stops a conversion: missing path, unreadable record, missing field."""


@dataclass(frozen=True)
class Document:
    """One whole document. `key` is stable across runs and machines; it decides the split."""

    text: str
    source: str
    language: str
    key: str


@dataclass(frozen=True)
class Skipped:
    """An input that produced no document, counted per source and reason in the summary."""

    source: str
    reason: str
    where: str


Item = Document | Skipped
