"""Typed settings of the MLM training loader: the single home of their defaults.

The training recipe embeds these dataclasses and a converter fills them from YAML, so they stay
plain dataclasses with simple typed fields, checked in ``__post_init__`` with errors that name
the offending field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

EVAL_MLM_PROBABILITY = 0.15  # ModernBERT evaluates at 15% masking (it trains at 30%)
MIN_SEQ_LEN = 3  # [CLS] + one token + [SEP]


def _check_fraction(owner: str, name: str, value: float, *, open_low: bool = False) -> None:
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1):
        bound = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{owner}.{name} must be in {bound}, got {value!r}")


@dataclass
class StreamConfig:
    """One MDS dataset of a mixture (see docs/interfaces.md section 1 for its layout).

    At most one of ``proportion`` (relative weight), ``repeat`` (times per epoch, may be
    fractional) and ``choose`` (documents per epoch) may be set; none means "each document once".
    """

    local: str
    remote: str | None = None  # object store / URL copied into `local` on demand
    split: str | None = None  # sub-folder; None inherits MLMLoaderConfig.split
    proportion: float | None = None
    repeat: float | None = None
    choose: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.local, str) or not self.local:
            raise ValueError(f"StreamConfig.local must be a non-empty path, got {self.local!r}")
        weights = {"proportion": self.proportion, "repeat": self.repeat, "choose": self.choose}
        given = [k for k, v in weights.items() if v is not None]
        if len(given) > 1:
            raise ValueError(
                f"StreamConfig: set at most one of proportion/repeat/choose, got {given}"
            )
        for name, value in weights.items():
            if value is not None and value < 0:
                raise ValueError(f"StreamConfig.{name} must be >= 0, got {value!r}")


@dataclass
class BatchSizeWarmup:
    """Linear ramp of the global batch size (rows) from ``start_batch_size`` to the target.

    Progress is measured in tokens counted as rows * max_seq_len, so the batch size of batch t
    is a pure function of t and a resumed run sees exactly the same schedule.
    """

    start_batch_size: int
    warmup_tokens: int

    def __post_init__(self) -> None:
        if self.start_batch_size < 1:
            raise ValueError(
                f"BatchSizeWarmup.start_batch_size must be >= 1, got {self.start_batch_size}"
            )
        if self.warmup_tokens < 0:
            raise ValueError(
                f"BatchSizeWarmup.warmup_tokens must be >= 0, got {self.warmup_tokens}"
            )


@dataclass
class MLMLoaderConfig:
    """Everything that decides which rows the loader yields and how they are masked."""

    streams: dict[str, StreamConfig]  # name -> stream; names appear in error messages
    split: str | None = "train"  # sub-folder of every stream; None: `local` holds index.json
    max_seq_len: int = 1024
    mlm_probability: float = 0.3
    mask_replace_prob: float = 0.8  # of the selected tokens: -> [MASK]
    random_replace_prob: float = 0.1  # -> a random real token; the rest stay unchanged
    shuffle: bool = True
    shuffle_seed: int = 17
    # Documents planned together by best-fit-decreasing packing: larger packs tighter, smaller
    # plans faster on resume. 8192 documents gives > 99% real tokens on web-like lengths.
    packing_window: int = 8192
    epoch_size: int | None = None  # documents per epoch when streams use `proportion`
    num_workers: int = 0
    prefetch_factor: int = 2  # batches each worker prepares ahead (num_workers > 0 only)
    persistent_workers: bool = True  # keep workers between epochs (num_workers > 0 only)
    pin_memory: bool = True  # only applied when CUDA is available
    drop_last: bool = True  # False keeps a last smaller batch (rounded down to world size)
    download_timeout: float = 60.0  # seconds per file fetched from a stream's remote
    # hash each shard once per process against its index digest (data/shard_hash.py); a
    # corrupt shard then stops the run instead of training on flipped token ids
    validate_hash: bool = True

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("MLMLoaderConfig.streams must name at least one stream")
        for name, stream in self.streams.items():
            if not isinstance(stream, StreamConfig):
                raise ValueError(
                    f"MLMLoaderConfig.streams[{name!r}] must be a StreamConfig, "
                    f"got {type(stream).__name__}"
                )
        if self.max_seq_len < MIN_SEQ_LEN:
            raise ValueError(
                f"MLMLoaderConfig.max_seq_len must be >= {MIN_SEQ_LEN} "
                f"([CLS] token [SEP]), got {self.max_seq_len}"
            )
        _check_fraction("MLMLoaderConfig", "mlm_probability", self.mlm_probability)
        _check_fraction("MLMLoaderConfig", "mask_replace_prob", self.mask_replace_prob)
        _check_fraction("MLMLoaderConfig", "random_replace_prob", self.random_replace_prob)
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError(
                "MLMLoaderConfig.mask_replace_prob + random_replace_prob must be <= 1, got "
                f"{self.mask_replace_prob} + {self.random_replace_prob}"
            )
        if self.shuffle_seed < 0:
            raise ValueError(f"MLMLoaderConfig.shuffle_seed must be >= 0, got {self.shuffle_seed}")
        positive = {"packing_window": self.packing_window, "prefetch_factor": self.prefetch_factor}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"MLMLoaderConfig.{name} must be >= 1, got {value}")
        if self.num_workers < 0:
            raise ValueError(f"MLMLoaderConfig.num_workers must be >= 0, got {self.num_workers}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"MLMLoaderConfig.epoch_size must be >= 1, got {self.epoch_size}")
        if self.download_timeout <= 0:
            raise ValueError(
                f"MLMLoaderConfig.download_timeout must be > 0, got {self.download_timeout}"
            )

    def eval_variant(self, split: str | None = "val") -> MLMLoaderConfig:
        """The same streams read for evaluation: 15% masking, fixed order, no row dropped."""
        return dataclasses.replace(
            self,
            split=split,
            mlm_probability=EVAL_MLM_PROBABILITY,
            shuffle=False,
            drop_last=False,
        )
