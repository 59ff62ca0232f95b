"""The flat training batch: real tokens only, with every shape-like number kept on the host.

A rank batch is built in the loader's workers as the model's varlen inputs (tensors, moved to
the device by Composer) plus a `FlatLayout` of numpy arrays that Composer leaves on the host.
The layout says where each packed row's tokens, documents and masked tokens start, so
`split_flat_batch` cuts microbatches by rows, and callbacks count tokens, without ever reading
a device tensor. See docs/interfaces.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from modernbert.data.masking import IGNORE_INDEX

# Tensors the model receives as they are (with `max_seqlen` and `seqlens_host` from the layout).
TENSOR_KEYS = ("input_ids", "cu_seqlens", "position_ids", "masked_positions", "masked_labels")
LAYOUT_KEY = "layout"
Batch = dict[str, Any]


@dataclass(frozen=True)
class FlatLayout:
    """Host-side description of a flat batch of packed rows.

    Row r holds tokens ``row_tokens[r]:row_tokens[r+1]``, documents
    ``row_docs[r]:row_docs[r+1]`` and masked tokens ``row_masked[r]:row_masked[r+1]`` of the
    batch. Being a plain object (not a tensor, not a numpy array at top level) it passes
    through the DataLoader, pinning and Composer's device move untouched.
    """

    seqlens: np.ndarray  # [n_docs] int32 document lengths (CLS and SEP included)
    row_tokens: np.ndarray  # [rows + 1] int64 offsets
    row_docs: np.ndarray  # [rows + 1] int64 offsets
    row_masked: np.ndarray  # [rows + 1] int64 offsets
    row_length: int  # token slots of a row (max_seq_len): what padding would fill

    @property
    def num_rows(self) -> int:
        return len(self.row_tokens) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.row_tokens[-1] - self.row_tokens[0])

    @property
    def num_docs(self) -> int:
        return int(self.row_docs[-1] - self.row_docs[0])

    @property
    def num_masked(self) -> int:
        return int(self.row_masked[-1] - self.row_masked[0])

    @property
    def max_seqlen(self) -> int:
        return int(self.seqlens.max()) if len(self.seqlens) else 0

    def rows(self, lo: int, hi: int) -> FlatLayout:
        """The layout of rows lo..hi-1, offsets counted from their first token/doc/mask."""
        d0, d1 = int(self.row_docs[lo]), int(self.row_docs[hi])
        return FlatLayout(
            seqlens=self.seqlens[d0:d1],
            row_tokens=self.row_tokens[lo : hi + 1] - self.row_tokens[lo],
            row_docs=self.row_docs[lo : hi + 1] - self.row_docs[lo],
            row_masked=self.row_masked[lo : hi + 1] - self.row_masked[lo],
            row_length=self.row_length,
        )


class FlatBatchBuilder:
    """Accumulates packed rows (numpy, in a worker) and emits one flat batch."""

    def __init__(self, row_length: int) -> None:
        self.row_length = row_length
        self._ids: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._seqlens: list[np.ndarray] = []

    def add_row(self, input_ids: np.ndarray, seqlens: np.ndarray, labels: np.ndarray) -> None:
        """One row's real tokens (masked), its document lengths and its labels (-100 = none)."""
        self._ids.append(input_ids)
        self._seqlens.append(np.asarray(seqlens, dtype=np.int32))
        self._positions.append(_positions(self._seqlens[-1]))
        self._labels.append(labels)

    def build(self) -> Batch:
        ids = np.concatenate(self._ids).astype(np.int64, copy=False)
        labels = np.concatenate(self._labels)
        seqlens = np.concatenate(self._seqlens)
        masked = np.flatnonzero(labels != IGNORE_INDEX)
        cu_seqlens = np.zeros(len(seqlens) + 1, dtype=np.int32)
        np.cumsum(seqlens, out=cu_seqlens[1:])
        row_tokens = _offsets([len(x) for x in self._ids])
        layout = FlatLayout(
            seqlens=seqlens,
            row_tokens=row_tokens,
            row_docs=_offsets([len(s) for s in self._seqlens]),
            row_masked=np.searchsorted(masked, row_tokens).astype(np.int64),
            row_length=self.row_length,
        )
        return {
            "input_ids": torch.from_numpy(ids),
            "cu_seqlens": torch.from_numpy(cu_seqlens),
            "position_ids": torch.from_numpy(np.concatenate(self._positions)),
            "masked_positions": torch.from_numpy(masked.astype(np.int64)),
            "masked_labels": torch.from_numpy(labels[masked]),
            LAYOUT_KEY: layout,
        }


def _offsets(counts: list[int]) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _positions(seqlens: np.ndarray) -> np.ndarray:
    """Position of every token inside its document: 0..n-1 for each length n."""
    total = int(seqlens.sum())
    starts = np.repeat(np.cumsum(seqlens) - seqlens, seqlens)
    return np.arange(total, dtype=np.int64) - starts


def layout_of(batch: Batch) -> FlatLayout:
    layout = batch.get(LAYOUT_KEY)
    if not isinstance(layout, FlatLayout):
        raise ValueError(
            f"not a flat batch: no FlatLayout under {LAYOUT_KEY!r} (keys: {sorted(batch)})"
        )
    return layout


def split_flat_batch(batch: Batch, microbatch_size: int | float) -> list[Batch]:
    """Microbatches of `microbatch_size` rows, cut with host-side offsets only.

    Token-wise tensors become views; `cu_seqlens` and `masked_positions` are rebased to the
    microbatch's first token (a subtraction of a Python int: no device read even if the
    tensors were already moved). New host tensors are pinned when the batch was.
    """
    layout = layout_of(batch)
    size = int(microbatch_size)
    if size < 1:
        raise ValueError(f"microbatch size must be >= 1 row, got {microbatch_size}")
    if layout.num_rows <= size:
        return [batch]
    return [
        _rows(batch, layout, lo, min(lo + size, layout.num_rows))
        for lo in range(0, layout.num_rows, size)
    ]


def _rows(batch: Batch, layout: FlatLayout, lo: int, hi: int) -> Batch:
    t0, t1 = int(layout.row_tokens[lo]), int(layout.row_tokens[hi])
    d0, d1 = int(layout.row_docs[lo]), int(layout.row_docs[hi])
    m0, m1 = int(layout.row_masked[lo]), int(layout.row_masked[hi])
    pinned = batch["input_ids"].device.type == "cpu" and batch["input_ids"].is_pinned()

    def rebased(t: torch.Tensor) -> torch.Tensor:
        if not t0:
            return t  # a view of the batch's tensor (pinned if it was)
        out = t - t0
        return out.pin_memory() if pinned else out

    return {
        "input_ids": batch["input_ids"][t0:t1],
        "cu_seqlens": rebased(batch["cu_seqlens"][d0 : d1 + 1]),
        "position_ids": batch["position_ids"][t0:t1],
        "masked_positions": rebased(batch["masked_positions"][m0:m1]),
        "masked_labels": batch["masked_labels"][m0:m1],
        LAYOUT_KEY: layout.rows(lo, hi),
    }


def model_inputs(batch: Batch) -> dict[str, Any]:
    """Exactly the keyword arguments of the model's flat training forward."""
    layout = layout_of(batch)
    missing = [k for k in TENSOR_KEYS if k not in batch]
    if missing:
        raise ValueError(f"flat batch lacks {missing}; got keys {sorted(batch)}")
    return {
        **{k: batch[k] for k in TENSOR_KEYS},
        "max_seqlen": layout.max_seqlen,
        "seqlens_host": torch.from_numpy(layout.seqlens),
    }


def padded_rows(batch: Batch, pad_id: int, per_document: bool = False) -> dict[str, torch.Tensor]:
    """The `[rows, row_length]` view of a flat batch (CPU): padded rows, attention mask,
    positions restarting at each document, labels at masked positions (-100 elsewhere).
    `per_document` gives every document a row of its own (the same tokens, positions and
    labels, never two documents in one row).

    For inspection, models that take padded rows (transformers) and tests; training uses the
    flat form.
    """
    layout = layout_of(batch)
    if per_document:
        bounds = [0, *np.cumsum(layout.seqlens).tolist()]
    else:
        bounds = [int(t) for t in layout.row_tokens]
    shape = (len(bounds) - 1, layout.row_length)
    ids = torch.full(shape, pad_id, dtype=torch.int64)
    mask = torch.zeros(shape, dtype=torch.int64)
    positions = torch.zeros(shape, dtype=torch.int64)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.int64)
    flat_labels = torch.full_like(batch["input_ids"], IGNORE_INDEX, device="cpu")
    flat_labels[batch["masked_positions"].cpu()] = batch["masked_labels"].cpu()
    for r, (t0, t1) in enumerate(pairwise(bounds)):
        n = t1 - t0
        ids[r, :n] = batch["input_ids"][t0:t1]
        mask[r, :n] = 1
        positions[r, :n] = batch["position_ids"][t0:t1]
        labels[r, :n] = flat_labels[t0:t1]
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
