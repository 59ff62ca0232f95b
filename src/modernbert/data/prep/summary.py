"""What a conversion produced: documents, tokens, bytes and skips per source and per split.

Written to OUTPUT/summary.json with no timings or absolute paths, so that identical inputs
give an identical file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "val")


@dataclass
class Counts:
    documents: int = 0
    tokens: int = 0
    bytes: int = 0
    # Largest token id written (-1: none). A run checks it against its model's vocabulary
    # at the door instead of meeting an out-of-range id inside the embedding kernel.
    max_token_id: int = -1

    def add(self, tokens: int, nbytes: int, max_token_id: int = -1) -> None:
        self.documents += 1
        self.tokens += tokens
        self.bytes += nbytes
        self.max_token_id = max(self.max_token_id, max_token_id)


@dataclass
class SourceStats(Counts):
    languages: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "languages": dict(sorted(self.languages.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


@dataclass
class Summary:
    """Running totals, filled by the converter as documents are written."""

    config: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceStats] = field(default_factory=dict)
    splits: dict[str, Counts] = field(default_factory=lambda: {s: Counts() for s in SPLITS})

    def _source(self, name: str) -> SourceStats:
        return self.sources.setdefault(name, SourceStats())

    def add_document(
        self,
        source: str,
        language: str,
        split: str,
        tokens: int,
        nbytes: int,
        max_token_id: int = -1,
    ):
        stats = self._source(source)
        stats.add(tokens, nbytes)
        stats.languages[language] += 1
        self.splits[split].add(tokens, nbytes, max_token_id)

    def add_skipped(self, source: str, reason: str) -> None:
        self._source(source).skipped[reason] += 1

    @property
    def documents(self) -> int:
        return sum(c.documents for c in self.splits.values())

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.splits.values())

    @property
    def skipped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for stats in self.sources.values():
            total.update(stats.skipped)
        return total

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """The inverse of to_dict (keys it does not know are ignored)."""
        summary = cls(config=dict(data.get("config", {})))
        for name, counts in data.get("splits", {}).items():
            summary.splits[name] = Counts(
                documents=counts["documents"],
                tokens=counts["tokens"],
                bytes=counts["bytes"],
                max_token_id=counts.get("max_token_id", -1),
            )
        for name, stats in data.get("sources", {}).items():
            summary.sources[name] = SourceStats(
                documents=stats["documents"],
                tokens=stats["tokens"],
                bytes=stats["bytes"],
                languages=Counter(stats.get("languages", {})),
                skipped=Counter(stats.get("skipped", {})),
            )
        return summary

    def add(self, other: Summary) -> None:
        """Add another conversion's counts to these (merging parts)."""
        for name, counts in other.splits.items():
            mine = self.splits.setdefault(name, Counts())
            mine.documents += counts.documents
            mine.tokens += counts.tokens
            mine.bytes += counts.bytes
            mine.max_token_id = max(mine.max_token_id, counts.max_token_id)
        for name, stats in other.sources.items():
            mine = self._source(name)
            mine.documents += stats.documents
            mine.tokens += stats.tokens
            mine.bytes += stats.bytes
            mine.languages.update(stats.languages)
            mine.skipped.update(stats.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "documents": self.documents,
            "tokens": self.tokens,
            "skipped": dict(sorted(self.skipped.items())),
            "splits": {name: vars(c).copy() for name, c in self.splits.items()},
            "sources": {name: s.to_dict() for name, s in sorted(self.sources.items())},
        }

    def format(self) -> str:
        """A plain-text table for the terminal."""
        rows = [("source", "docs", "tokens", "MB", "skipped")]
        for name, s in sorted(self.sources.items()):
            skipped = " ".join(f"{r}={n}" for r, n in sorted(s.skipped.items())) or "-"
            rows.append((name, str(s.documents), str(s.tokens), f"{s.bytes / 1e6:.2f}", skipped))
        for name, c in self.splits.items():
            rows.append((f"[{name}]", str(c.documents), str(c.tokens), f"{c.bytes / 1e6:.2f}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in rows
        )
