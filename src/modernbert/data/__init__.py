"""Data layer: tokenizer, MDS shards, streaming dataset, packing and MLM masking.

The loader API is re-exported lazily (PEP 562), so importing ``modernbert.data.prep`` or
``modernbert.data.tokenizer`` in a tokenization worker does not pull in torch and streaming.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BatchSizeWarmup": "config",
    "MLMLoaderConfig": "config",
    "StreamConfig": "config",
    "EVAL_MLM_PROBABILITY": "config",
    "MLMDataLoader": "loader",
    "build_mlm_dataloader": "loader",
    "num_samples_in_batch": "loader",
    "num_tokens_in_batch": "loader",
    "composer_token_counts": "loader",
    "FlatLayout": "flat",
    "split_flat_batch": "flat",
    "padded_rows": "flat",
    "packing_efficiency": "loader",
    "MLMMasker": "masking",
    "IGNORE_INDEX": "masking",
    "PackedMLMDataset": "dataset",
}

__all__ = [
    "EVAL_MLM_PROBABILITY",
    "IGNORE_INDEX",
    "BatchSizeWarmup",
    "FlatLayout",
    "MLMDataLoader",
    "MLMLoaderConfig",
    "MLMMasker",
    "PackedMLMDataset",
    "StreamConfig",
    "build_mlm_dataloader",
    "composer_token_counts",
    "num_samples_in_batch",
    "num_tokens_in_batch",
    "packing_efficiency",
    "padded_rows",
    "split_flat_batch",
]

if TYPE_CHECKING:
    from modernbert.data.config import (
        EVAL_MLM_PROBABILITY,
        BatchSizeWarmup,
        MLMLoaderConfig,
        StreamConfig,
    )
    from modernbert.data.dataset import PackedMLMDataset
    from modernbert.data.flat import FlatLayout, padded_rows, split_flat_batch
    from modernbert.data.loader import (
        MLMDataLoader,
        build_mlm_dataloader,
        composer_token_counts,
        num_samples_in_batch,
        num_tokens_in_batch,
        packing_efficiency,
    )
    from modernbert.data.masking import IGNORE_INDEX, MLMMasker


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
