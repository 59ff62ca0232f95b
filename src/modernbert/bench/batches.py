"""Synthetic MLM batches for the benchmark: the same documents, two layouts.

transformers' ModernBERT (sdpa) is fed the way its users feed it: one document per row,
padded to the longest document of the batch, with an attention mask. Ours is fed the way our
loader and trainer feed it (docs/interfaces.md section 3): documents packed into rows, then
flattened to the real tokens with host-side document lengths and the masked positions, i.e.
exactly the model's fast-path keyword arguments. Both layouts hold exactly the same documents,
the same masked positions and therefore the same number of real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from modernbert.model.config import IGNORE_INDEX

from ..data.flat import FlatBatchBuilder, model_inputs
from ..special_tokens import trained_ids

HOST_KEYS = ("max_seqlen", "seqlens_host")  # stay on the host when a batch moves
LABEL_KEYS = ("labels", "masked_positions", "masked_labels")  # dropped for inference


_IDS = trained_ids()


@dataclass(frozen=True)
class TokenIds:
    """Special ids of the synthetic vocabulary, laid out as in a tokenizer we train (body
    tokens are drawn from `first_body` on)."""

    cls_id: int = _IDS["cls"]
    sep_id: int = _IDS["sep"]
    mask_id: int = _IDS["mask"]
    pad_id: int = _IDS["pad"]
    first_body: int = len(_IDS)


@dataclass(frozen=True)
class LengthDistribution:
    """Log-normal document lengths (in tokens, specials included), clipped to [min_len, max_len].

    Web text and code are heavy-tailed: most documents are a few hundred tokens, a few are
    far longer than any sequence, which is what makes padding expensive.
    """

    median: float
    sigma: float
    min_len: int = 8

    def sample(self, rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
        raw = rng.lognormal(mean=np.log(self.median), sigma=self.sigma, size=n)
        return np.clip(np.rint(raw), self.min_len, max_len).astype(np.int64)


@dataclass
class Doc:
    """One masked document: `input_ids` (with [MASK] applied) and `labels` (-100 if unselected)."""

    input_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)


def make_doc(
    rng: np.random.Generator, length: int, vocab_size: int, mask_prob: float, ids: TokenIds
) -> Doc:
    """`[CLS] body [SEP]` of `length` tokens with round(mask_prob * len(body)) body tokens masked."""
    if length < 3:
        raise ValueError(f"document length must be >= 3 (CLS, one token, SEP), got {length}")
    if vocab_size <= ids.first_body:
        raise ValueError(f"vocab_size must exceed {ids.first_body}, got {vocab_size}")
    body = rng.integers(ids.first_body, vocab_size, size=length - 2)
    tokens = np.concatenate([[ids.cls_id], body, [ids.sep_id]]).astype(np.int64)
    labels = np.full(length, IGNORE_INDEX, dtype=np.int64)
    n_mask = round(mask_prob * (length - 2))
    picked = 1 + rng.choice(length - 2, size=n_mask, replace=False)
    labels[picked] = tokens[picked]
    inputs = tokens.copy()
    inputs[picked] = ids.mask_id
    return Doc(inputs, labels)


def fixed_docs(
    rng: np.random.Generator,
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    mask_prob: float,
    ids: TokenIds,
) -> list[Doc]:
    """`batch_size` documents of exactly `seq_len` tokens: one full row each, on both sides."""
    return [make_doc(rng, seq_len, vocab_size, mask_prob, ids) for _ in range(batch_size)]


def variable_docs(
    rng: np.random.Generator,
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    mask_prob: float,
    ids: TokenIds,
    lengths: LengthDistribution,
) -> list[Doc]:
    """Documents drawn until `batch_size` packed rows are full (online first-fit, like a loader).

    Stops at the first document that fits in no open row, so ours sees exactly `batch_size`
    rows and transformers sees the same documents one per row.
    """
    free = [seq_len] * batch_size
    docs: list[Doc] = []
    while True:
        n = int(lengths.sample(rng, 1, seq_len)[0])
        row = next((i for i, room in enumerate(free) if room >= n), None)
        if row is None:
            return docs
        free[row] -= n
        docs.append(make_doc(rng, n, vocab_size, mask_prob, ids))


def padded_batch(docs: list[Doc], pad_id: int) -> dict[str, torch.Tensor]:
    """One document per row, right-padded to the longest document (HF dynamic padding)."""
    width = max(len(d) for d in docs)
    input_ids = np.full((len(docs), width), pad_id, dtype=np.int64)
    labels = np.full((len(docs), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(docs), width), dtype=np.int64)
    for i, d in enumerate(docs):
        input_ids[i, : len(d)] = d.input_ids
        labels[i, : len(d)] = d.labels
        mask[i, : len(d)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
    }


def flat_batch(docs: list[Doc], seq_len: int) -> dict[str, torch.Tensor | int]:
    """Documents packed first-fit into rows of `seq_len`, flattened as the loader does
    (data/flat.py): the model's fast-path keyword arguments."""
    rows: list[list[Doc]] = []
    free: list[int] = []
    for d in docs:
        if len(d) > seq_len:
            raise ValueError(f"document of {len(d)} tokens does not fit seq_len={seq_len}")
        row = next((i for i, room in enumerate(free) if room >= len(d)), None)
        if row is None:
            rows.append([])
            free.append(seq_len)
            row = len(rows) - 1
        rows[row].append(d)
        free[row] -= len(d)
    builder = FlatBatchBuilder(seq_len)
    for row_docs in rows:
        builder.add_row(
            np.concatenate([d.input_ids for d in row_docs]),
            np.array([len(d) for d in row_docs]),
            np.concatenate([d.labels for d in row_docs]),
        )
    return model_inputs(builder.build())


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to `device`, except the host-side metadata the model must get on the CPU."""
    return {
        k: v.to(device) if torch.is_tensor(v) and k not in HOST_KEYS else v
        for k, v in batch.items()
    }


def real_tokens(batch: dict) -> int:
    """Tokens that carry data (padding excluded): what throughput is counted in."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())  # flat: real tokens only


def masked_tokens(batch: dict) -> int:
    """Positions that carry an MLM label."""
    if "masked_labels" in batch:
        return int(batch["masked_labels"].numel())
    return int((batch["labels"] != IGNORE_INDEX).sum())
