"""BERT-style MLM masking of packed rows, reproducible per row.

Contract: `MLMMasker.mask_row(ids, rng)` masks one row of token ids in place and returns its
labels (the original id at each selected position, `IGNORE_INDEX` elsewhere). Only real,
non-special tokens are selected (the masked-LM roles and every id the tokenizer marks
special never are); of those, 80% become `[MASK]`, 10% a random real token, 10% stay (the
split is configurable). A row is masked with a generator seeded by (seed, epoch, global row
index) (`row_rng`), so a resumed run and any number of dataloader workers produce
exactly the same masks.
"""

from __future__ import annotations

import numpy as np

from modernbert.data.tokenizer import TokenSpec
from modernbert.model.config import IGNORE_INDEX

_MASKING_STREAM = 0x4D4C4D  # keeps masking draws apart from any other use of the same seed


class MLMMasker:
    """Select real, non-special tokens with probability p; of those 80% [MASK], 10% random
    real token, 10% unchanged (the split is configurable). Labels hold the original ids."""

    def __init__(
        self,
        tokens: TokenSpec,
        mlm_probability: float,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
    ) -> None:
        if not 0 <= mlm_probability <= 1:
            raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
        if mask_replace_prob < 0 or random_replace_prob < 0:
            raise ValueError("mask_replace_prob and random_replace_prob must be >= 0")
        if mask_replace_prob + random_replace_prob > 1:
            raise ValueError(
                "mask_replace_prob + random_replace_prob must be <= 1, got "
                f"{mask_replace_prob} + {random_replace_prob}"
            )
        self.tokens = tokens
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        specials = {*tokens.special_ids, *tokens.role_ids()}
        table_size = max(tokens.vocab_size, max(specials) + 1)
        self.is_special = np.zeros(table_size, dtype=bool)
        self.is_special[list(specials)] = True
        self.replacement_ids = np.flatnonzero(~self.is_special[: tokens.vocab_size])
        if random_replace_prob > 0 and not len(self.replacement_ids):
            raise ValueError("the vocabulary has no non-special token to use as random replacement")

    def row_rng(self, seed: int, epoch: int, row: int) -> np.random.Generator:
        return np.random.default_rng([_MASKING_STREAM, seed, epoch, row])

    def mask_row(self, input_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Mask `input_ids` (int64, one row) in place; return its labels."""
        labels = np.full(input_ids.shape, IGNORE_INDEX, dtype=np.int64)
        candidates = np.flatnonzero(~self.is_special[input_ids])
        chosen = candidates[rng.random(len(candidates)) < self.mlm_probability]
        if not len(chosen):
            return labels
        labels[chosen] = input_ids[chosen]
        action = rng.random(len(chosen))
        to_mask = chosen[action < self.mask_replace_prob]
        to_random = chosen[
            (action >= self.mask_replace_prob)
            & (action < self.mask_replace_prob + self.random_replace_prob)
        ]
        input_ids[to_mask] = self.tokens.mask_id
        if len(to_random):
            input_ids[to_random] = self.replacement_ids[
                rng.integers(len(self.replacement_ids), size=len(to_random))
            ]
        return labels
