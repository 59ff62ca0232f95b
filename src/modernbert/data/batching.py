"""Global batch sizes per batch index, with an optional linear batch-size warmup.

The size of global batch t depends on t alone (warmup progress is counted as rows *
max_seq_len tokens, not as real tokens), so the schedule can be replayed on resume without
looking at any data. Every size is a multiple of the world size: each rank gets size / world
rows of every batch.
"""

from __future__ import annotations

from itertools import accumulate

from modernbert.data.config import BatchSizeWarmup


class BatchSchedule:
    """Rows per global batch. During warmup the linear ramp value is rounded *up* to a multiple
    of the world size (so no rank ever gets an empty batch) and capped at the target."""

    def __init__(
        self,
        global_batch_size: int,
        world_size: int,
        max_seq_len: int,
        warmup: BatchSizeWarmup | None = None,
    ) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if global_batch_size < 1 or global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size ({global_batch_size}) must be a positive multiple of the "
                f"world size ({world_size})"
            )
        if warmup is not None and warmup.start_batch_size > global_batch_size:
            raise ValueError(
                f"BatchSizeWarmup.start_batch_size ({warmup.start_batch_size}) exceeds the "
                f"global batch size ({global_batch_size})"
            )
        self.target = global_batch_size
        self.world_size = world_size
        self.warmup_sizes = self._ramp(warmup, max_seq_len) if warmup else []
        self._warmup_ends = [0, *accumulate(self.warmup_sizes)]  # rows before warmup batch t

    def _ramp(self, warmup: BatchSizeWarmup, max_seq_len: int) -> list[int]:
        sizes: list[int] = []
        tokens = 0
        span = self.target - warmup.start_batch_size
        while tokens < warmup.warmup_tokens:
            exact = warmup.start_batch_size + span * tokens / warmup.warmup_tokens
            size = min(self.target, -(-int(exact) // self.world_size) * self.world_size)
            if size == self.target:
                break
            sizes.append(size)
            tokens += size * max_seq_len
        return sizes

    @property
    def warmup_batches(self) -> int:
        return len(self.warmup_sizes)

    def global_size(self, t: int) -> int:
        """Rows of global batch t (counted from the start of training)."""
        return self.warmup_sizes[t] if t < len(self.warmup_sizes) else self.target

    def rows_before(self, t: int) -> int:
        """Rows in global batches 0..t-1."""
        n = len(self.warmup_sizes)
        if t <= n:
            return self._warmup_ends[t]
        return self._warmup_ends[n] + (t - n) * self.target
