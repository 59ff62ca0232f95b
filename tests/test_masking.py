"""MLM masking: rates, the 80/10/10 split, special tokens and padding never selected."""

from __future__ import annotations

import numpy as np
import pytest

from modernbert.data.masking import IGNORE_INDEX, MLMMasker
from modernbert.data.tokenizer import TokenSpec

TOKENS = TokenSpec(
    cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=500
)
SPECIAL = np.array(TOKENS.special_ids)


def _rows(n_rows: int = 64, length: int = 512) -> np.ndarray:
    """Packed-looking rows: CLS/SEP around pieces, [UNK] sprinkled in, padding at the end."""
    rng = np.random.default_rng(0)
    rows = rng.integers(5, TOKENS.vocab_size, size=(n_rows, length))
    rows[:, ::50] = TOKENS.cls_id
    rows[:, 49::50] = TOKENS.sep_id
    rows[:, 7::97] = 4  # [UNK]: special, never masked
    rows[:, -40:] = TOKENS.pad_id
    return rows


def _mask_all(masker: MLMMasker, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    masked = rows.copy()
    labels = np.stack(
        [masker.mask_row(masked[i], masker.row_rng(7, 0, i)) for i in range(len(masked))]
    )
    return masked, labels


@pytest.mark.parametrize("p", [0.3, 0.15])
def test_selection_rate_and_80_10_10_split(p):
    rows = _rows()
    masker = MLMMasker(TOKENS, p)
    masked, labels = _mask_all(masker, rows)
    maskable = ~np.isin(rows, SPECIAL)
    selected = labels != IGNORE_INDEX
    n = maskable.sum()
    rate = selected.sum() / n
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert (labels[selected] == rows[selected]).all()  # labels hold the original ids
    assert (masked[~selected] == rows[~selected]).all()  # nothing else changes
    to_mask = masked[selected] == TOKENS.mask_id
    kept = masked[selected] == rows[selected]
    randomised = ~to_mask & ~kept
    k = selected.sum()
    assert abs(to_mask.mean() - 0.8) < 4 * np.sqrt(0.16 / k)
    # A random replacement may draw the original id (1 in 495): count those as "kept".
    assert abs(randomised.mean() - 0.1 * (1 - 1 / 495)) < 4 * np.sqrt(0.09 / k)
    assert abs(kept.mean() - 0.1 * (1 + 1 / 495)) < 4 * np.sqrt(0.09 / k)
    assert not np.isin(masked[selected][randomised], SPECIAL).any()  # random ids are real


def test_special_tokens_and_padding_are_never_selected():
    rows = _rows()
    masked, labels = _mask_all(MLMMasker(TOKENS, 1.0), rows)
    special = np.isin(rows, SPECIAL)
    assert (labels[special] == IGNORE_INDEX).all()
    assert (masked[special] == rows[special]).all()
    assert (labels[~special] != IGNORE_INDEX).all()  # p=1 selects every real token


def test_masking_is_a_function_of_seed_epoch_and_row():
    row = _rows(1)[0]
    masker = MLMMasker(TOKENS, 0.3)

    def run(seed, epoch, index):
        ids = row.copy()
        return ids, masker.mask_row(ids, masker.row_rng(seed, epoch, index))

    a_ids, a_labels = run(1, 2, 3)
    b_ids, b_labels = run(1, 2, 3)
    assert (a_ids == b_ids).all() and (a_labels == b_labels).all()
    for other in [(2, 2, 3), (1, 3, 3), (1, 2, 4)]:
        assert not (run(*other)[1] == a_labels).all()


def test_invalid_probabilities_are_rejected():
    with pytest.raises(ValueError, match="mlm_probability"):
        MLMMasker(TOKENS, 1.5)
    with pytest.raises(ValueError, match="mask_replace_prob"):
        MLMMasker(TOKENS, 0.3, mask_replace_prob=0.95, random_replace_prob=0.1)
