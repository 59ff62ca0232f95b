"""An offline downstream task from this machine's corpus: is a snippet code or prose?

Snippets are windows of whole lines cut from the documents of the built-in local corpus
(`modernbert.data.prep.local_corpus`: Python source is code; docs and docstrings are
prose), balanced between the classes. The split is by document (a hash of its key), so no
document gives snippets to both train and validation. It is saved in the `datasets` format
GLUE's single-sentence tasks use (`text`, `label`), so it runs through the same code path
as SST-2 or CoLA. The demo's model saw these documents during pretraining (without labels),
as a domain model sees its domain.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

from modernbert.eval.tasks import CODE_PROSE

LABEL_NAMES = ("prose", "code")
DEFAULT_SNIPPET_CHARS = 200
DEFAULT_PER_CLASS = 300  # train + validation examples per class: a demo step of ~a minute
DEFAULT_VAL_FRACTION = 0.25
DEFAULT_MAX_BYTES = 4 * 2**20  # of corpus read: far more than the snippets need


def snippets(text: str, chars: int) -> Iterator[str]:
    """Consecutive windows of whole lines of about `chars` characters (blank-only skipped)."""
    window: list[str] = []
    size = 0
    for line in text.splitlines():
        window.append(line)
        size += len(line) + 1
        if size >= chars:
            snippet = "\n".join(window).strip()
            if snippet:
                yield snippet[: 2 * chars]
            window, size = [], 0


def _round_robin(lists: list[list[str]]) -> Iterator[str]:
    """One snippet of each document in turn, so that a few long files do not fill a class."""
    for row in itertools.zip_longest(*lists):
        yield from (item for item in row if item is not None)


def _split_documents(docs: list, val_fraction: float, seed: int) -> dict[str, list]:
    """A stable `val_fraction` of the documents (at least one) for validation, by key hash:
    documents, not snippets, are split, so validation text is never seen in training."""

    def rank(doc) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{doc.key}".encode(), digest_size=8).digest()

    ordered = sorted(docs, key=rank)
    n_val = max(1, round(len(ordered) * val_fraction)) if len(ordered) > 1 else 0
    return {"train": ordered[n_val:], "validation": ordered[:n_val]}


def build_code_prose(
    output: str | Path,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    snippet_chars: int = DEFAULT_SNIPPET_CHARS,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    max_bytes: int = DEFAULT_MAX_BYTES,
    packages: tuple[str, ...] | None = None,
    seed: int = 0,
) -> Path:
    """Write OUTPUT/code_prose (a DatasetDict: train, validation); returns that folder."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from modernbert.data.prep.documents import TEXT
    from modernbert.data.prep.local_corpus import DEFAULT_PACKAGES, build_local_corpus

    if per_class < 4:
        raise ValueError(f"per_class must be >= 4, got {per_class}")
    docs = build_local_corpus(packages or DEFAULT_PACKAGES, max_bytes=max_bytes)
    rng = random.Random(seed)
    by_label: dict[int, list] = {0: [], 1: []}
    for doc in docs:
        by_label[0 if doc.language == TEXT else 1].append(doc)
    wanted = {"validation": max(1, round(per_class * val_fraction))}
    wanted["train"] = per_class - wanted["validation"]
    splits: dict[str, dict[str, list]] = {s: {"text": [], "label": []} for s in wanted}
    for label, class_docs in by_label.items():
        for split, class_split_docs in _split_documents(class_docs, val_fraction, seed).items():
            lists = []
            for doc in class_split_docs:
                found = list(snippets(doc.text, snippet_chars))
                rng.shuffle(found)
                lists.append(found)
            chosen = list(itertools.islice(_round_robin(lists), wanted[split]))
            if len(chosen) < wanted[split]:
                raise ValueError(
                    f"only {len(chosen)} {LABEL_NAMES[label]} snippets for {split} in "
                    f"{max_bytes} bytes of the local corpus, need {wanted[split]}; raise "
                    "max_bytes or lower per_class"
                )
            splits[split]["text"].extend(chosen)
            splits[split]["label"].extend([label] * len(chosen))
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(LABEL_NAMES))})
    data = DatasetDict(
        {
            name: Dataset.from_dict(cols, features=features).shuffle(seed=seed)
            for name, cols in splits.items()
        }
    )
    folder = Path(output) / CODE_PROSE
    data.save_to_disk(str(folder))
    return folder
