"""The document order of an epoch, computed per position instead of stored.

An epoch over 2.6B documents stored as a shuffled int64 array takes 21 GB in every loader
process. A seeded permutation can instead be *evaluated*: position i -> document id with a
keyed Feistel network over the next power of four above n, walking the cycle until the value
falls inside [0, n) (a bijection of [0, n) by construction). Any slice of the order costs time
and memory proportional to the slice, so a resume can jump to any window of the epoch.
"""

from __future__ import annotations

import numpy as np

ROUNDS = 8
_BLOCK = 4096  # positions computed (and cached) together when asked for one
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """A 64-bit finaliser (splitmix64 constants) of x ^ key: every input bit moves every
    output bit, which a Feistel round function needs."""
    z = (x ^ key) * _M1
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    return z ^ (z >> np.uint64(31))


class PermutedRange:
    """A seeded permutation of range(n) that supports len(), order[i] and order[lo:hi]."""

    def __init__(self, n: int, seed: tuple[int, ...]) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = n
        bits = max(2, (max(n, 1) - 1).bit_length())
        bits += bits % 2
        self._half = np.uint64(bits // 2)
        self._mask = np.uint64((1 << (bits // 2)) - 1)
        rng = np.random.default_rng([*seed, 0x5EED])
        self._keys = rng.integers(0, 2**63, size=ROUNDS, dtype=np.uint64)
        self._block: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return self.n

    def _permute(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix(right, key) & self._mask)
        return (left << self._half) | right

    def positions(self, lo: int, hi: int) -> np.ndarray:
        """Document ids at positions lo..hi-1, as int64."""
        lo, hi = max(lo, 0), min(hi, self.n)
        if hi <= lo:
            return np.empty(0, dtype=np.int64)
        y = self._permute(np.arange(lo, hi, dtype=np.uint64))
        out = y >= np.uint64(self.n)
        while out.any():  # cycle-walk values outside [0, n) back into it
            y[out] = self._permute(y[out])
            out = y >= np.uint64(self.n)
        return y.astype(np.int64)

    def __getitem__(self, index: int | slice | np.integer) -> int | np.ndarray:
        if isinstance(index, slice):
            lo, hi, step = index.indices(self.n)
            if step != 1:
                raise IndexError("PermutedRange slices must have step 1")
            return self.positions(lo, hi)
        i = int(index)
        if not -self.n <= i < self.n:
            raise IndexError(f"position {i} out of range for {self.n} documents")
        i %= self.n
        start = i - i % _BLOCK
        if self._block[0] != start:  # a batch reads neighbouring positions: compute a block
            self._block = (start, self.positions(start, start + _BLOCK))
        return int(self._block[1][i - start])
