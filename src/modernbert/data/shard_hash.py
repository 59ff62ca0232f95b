"""Shard checksums: written at conversion, checked by the loader before a shard's tokens are used.

``MDSWriter(hashes=[SHARD_HASH])`` records a digest of every shard file in ``index.json``.
mosaicml-streaming checks them only when it downloads a shard, never for shards already on
local disk, so a flipped bit in a token id would train on silently. ``ShardValidator`` closes
that gap: the first time this process reads from a shard it hashes the shard file once and
compares, so the check costs one extra read of each shard per process (what that costs:
README "Data is checked", measured with ``scripts/bench.py loader --validate-hash on off``).
"""

from __future__ import annotations

import os
import warnings

from streaming import StreamingDataset
from streaming.base.hashing import get_hash

SHARD_HASH = "xxh64"  # the digest written at conversion and checked by the loader


class ShardValidator:
    """Checks each shard of a StreamingDataset against its recorded digest, once per process."""

    def __init__(self, dataset: StreamingDataset, algorithm: str = SHARD_HASH) -> None:
        self.dataset = dataset
        self.algorithm = algorithm
        self._checked: set[int] = set()
        self._warned_unhashed = False

    def check(self, shard_id: int) -> str | None:
        """What is wrong with the shard's bytes (None: they match its index digest)."""
        if shard_id in self._checked:
            return None
        reader = self.dataset.shards[shard_id]
        for raw_info, _ in reader.file_pairs:
            expected = (raw_info.hashes or {}).get(self.algorithm)
            path = os.path.join(reader.dirname, reader.split, raw_info.basename)
            if expected is None:
                self._warn_unhashed(path)
                continue
            with open(path, "rb") as f:
                actual = get_hash(self.algorithm, f.read())
            if actual != expected:
                return (
                    f"is corrupt: the file's {self.algorithm} digest is {actual} but its index "
                    f"recorded {expected} (re-copy or re-convert this dataset)"
                )
        self._checked.add(shard_id)
        return None

    def _warn_unhashed(self, path: str) -> None:
        if not self._warned_unhashed:
            self._warned_unhashed = True
            warnings.warn(
                f"{path}: its index records no {self.algorithm} digest, so shards of this "
                "dataset are not checked for corruption (convert it again to add digests)",
                stacklevel=4,
            )
