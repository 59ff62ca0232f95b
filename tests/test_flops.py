"""The one FLOP count (bench/flops.py) that the speed monitor's MFU and the benchmark share."""

from __future__ import annotations

import numpy as np
import pytest

from modernbert.bench.flops import (
    attended_keys,
    datasheet_peak_flops,
    forward_flops,
    mfu,
    step_flops,
)
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM

TINY = ModernBertConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    local_attention=16,
    global_attn_every_n_layers=3,
    max_position_embeddings=256,
    pad_token_id=0,
    cls_token_id=1,
    sep_token_id=2,
    mask_token_id=3,
)


def test_forward_flops_by_hand():
    d, f, v = 64, 96, 128
    docs = [40, 5, 100]
    matmul = 3 * 2 * (4 * d * d + 3 * d * f) * sum(docs)
    # layer 0 global: every pair inside a document; layers 1, 2 local: band of 8 each side
    global_pairs = sum(n * n for n in docs)
    local_pairs = sum(n * 17 - 8 * 9 if n > 9 else n * n for n in docs)
    attention = 4 * d * (global_pairs + 2 * local_pairs)
    head = 30 * 2 * (d * d + d * v)
    assert forward_flops(TINY, docs, 30) == pytest.approx(matmul + attention + head)
    assert step_flops(TINY, docs, 30, "train") == pytest.approx(3 * (matmul + attention + head))


def test_matmul_term_is_twice_the_encoder_weights_per_token():
    model = ModernBertForMaskedLM(TINY)
    encoder = sum(p.numel() for p in model.model.layers.parameters() if p.ndim == 2)
    one_token = forward_flops(TINY, [1], 0) - 4 * 64 * 3  # one key per layer
    assert one_token == pytest.approx(2 * encoder)  # 6N per token once x3 for training


def test_attended_keys_on_arrays_equals_per_document():
    lengths = np.array([1, 2, 8, 9, 10, 17, 300])
    for half in (None, 0, 4, 8, 64):
        per_doc = [attended_keys(int(n), half) for n in lengths]
        assert attended_keys(lengths, half).tolist() == per_doc


def test_peaks_and_mfu():
    assert datasheet_peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert datasheet_peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert datasheet_peak_flops("NVIDIA GeForce RTX 4090") is None
    assert mfu(4e12, 2.0, 2, 1e12) == pytest.approx(1.0)
