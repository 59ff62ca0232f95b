"""A bounded, reproducible sample of a corpus for tokenizer training.

Reading the first N bytes trains the tokenizer on whatever files sort first (one language,
one site, one year). Instead the inputs are cut into the units of a partitioned conversion
(files, ranges of large JSONL/Parquet files), visited in a seeded pseudo-random order, and
each visited unit gives its first documents up to an equal share of the bytes still wanted.
Memory holds one document at a time; reading stops once `max_bytes` have been taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from modernbert.data.prep.documents import Document
from modernbert.data.prep.inputs import Source
from modernbert.data.prep.partition import DEFAULT_SPLIT_BYTES, Unit, plan_units

DEFAULT_SAMPLE_SEED = 0


def _rank(unit: Unit, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{unit.name}".encode(), digest_size=8).digest()


def sample_texts(
    sources: Iterable[Source],
    max_bytes: int,
    seed: int = DEFAULT_SAMPLE_SEED,
    split_bytes: int = DEFAULT_SPLIT_BYTES,
) -> Iterator[str]:
    """Texts of about `max_bytes` (UTF-8) drawn from every part of the inputs, reproducibly.

    A unit gets (bytes still wanted) / (units not yet visited), at least one document, so
    small units leave their unused share to the ones after them.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    units = sorted(plan_units(sources, split_bytes, exact_keys=False), key=lambda u: _rank(u, seed))
    taken = 0
    for visited, unit in enumerate(units):
        if taken >= max_bytes:
            return
        share = (max_bytes - taken) / (len(units) - visited)
        got = 0
        for item in unit.read():
            if not isinstance(item, Document):
                continue
            size = len(item.text.encode("utf-8"))
            if got and got + size > share:
                break
            yield item.text
            got += size
            if got >= share:
                break
        taken += got
