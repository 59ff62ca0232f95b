"""The ours-vs-transformers benchmark on a micro preset: layouts, JSON structure, memory probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modernbert.bench.batches import (
    IGNORE_INDEX,
    LengthDistribution,
    TokenIds,
    flat_batch,
    masked_tokens,
    padded_batch,
    real_tokens,
    variable_docs,
)
from modernbert.bench.cli import main as bench_main
from modernbert.bench.flops import attended_keys, step_flops
from modernbert.bench.presets import get_preset


def test_layouts_hold_the_same_documents():
    rng = np.random.default_rng(0)
    ids = TokenIds()
    docs = variable_docs(rng, 4, 128, 1000, 0.3, ids, LengthDistribution(median=30, sigma=1.0))
    flat, padded = flat_batch(docs, 128), padded_batch(docs, ids.pad_id)
    assert set(flat) == {
        "input_ids",
        "cu_seqlens",
        "max_seqlen",
        "position_ids",
        "seqlens_host",
        "masked_positions",
        "masked_labels",
    }
    assert padded["input_ids"].shape == (len(docs), max(len(d) for d in docs))
    assert real_tokens(flat) == real_tokens(padded) == sum(len(d) for d in docs)
    assert masked_tokens(flat) == masked_tokens(padded)
    # 30% of each body is masked, never the specials.
    for d in docs:
        assert (d.labels != IGNORE_INDEX).sum() == round(0.3 * (len(d) - 2))
        assert d.labels[0] == d.labels[-1] == IGNORE_INDEX
    # Flat: each document starts with [CLS] at position 0, at its cu_seqlens offset.
    starts = flat["cu_seqlens"][:-1].long()
    assert len(starts) == len(docs) and flat["seqlens_host"].device.type == "cpu"
    assert bool((flat["input_ids"][starts] == ids.cls_id).all())
    assert bool((flat["position_ids"][starts] == 0).all())
    assert flat["max_seqlen"] == max(len(d) for d in docs)
    # The same multiset of tokens and of masked targets on both sides.
    flat_ids = sorted(flat["input_ids"].tolist())
    assert flat_ids == sorted(padded["input_ids"][padded["attention_mask"].bool()].tolist())
    labels = padded["labels"][padded["labels"] != IGNORE_INDEX]
    assert sorted(flat["masked_labels"].tolist()) == sorted(labels.tolist())


def test_packing_refuses_a_document_longer_than_a_row():
    rng = np.random.default_rng(0)
    docs = variable_docs(rng, 1, 64, 100, 0.3, TokenIds(), LengthDistribution(60, 0.1))
    with pytest.raises(ValueError, match="seq_len=16"):
        flat_batch(docs, 16)


@pytest.mark.parametrize("length", [1, 5, 9, 40])
@pytest.mark.parametrize("half", [None, 0, 3, 8])
def test_attended_keys_matches_brute_force(length, half):
    i = np.arange(length)
    allowed = np.ones((length, length), bool)
    if half is not None:
        allowed = np.abs(i[:, None] - i[None, :]) <= half
    assert attended_keys(length, half) == int(allowed.sum())


def test_step_flops_counts_backward_and_rejects_bad_phase():
    config = get_preset("tiny").model_config(64, "sdpa")
    infer = step_flops(config, [10, 20], 30, "inference")
    train = step_flops(config, [10, 20], 30, "train")
    assert train == pytest.approx(3 * infer)  # head on all 30 tokens either way
    with pytest.raises(ValueError, match="phase"):
        step_flops(config, [10], 3, "eval")


def test_bad_preset_and_field_are_named():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*cpu"):
        get_preset("huge")
    with pytest.raises(ValueError, match="repeatz"):
        get_preset("tiny").replace(repeatz=3)


def test_cli_tiny_preset_writes_consistent_json(tmp_path):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        code = bench_main(
            ["speed", "--preset", "tiny", "--repeats", "1", "--threads", "1", "--json", str(out)]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["preset"] == "tiny"
    loss = result["loss_memory"]  # the tiny preset's small head + loss figure
    assert loss["masked_tokens"] == 256 and loss["vocab_size"] == 512
    assert loss["plain_peak_bytes"] > 0 and loss["chunked_peak_bytes"] > 0
    assert result["machine"]["cpu_threads"] == 1
    assert set(result["scenarios"]) == {
        "train_fixed",
        "train_variable",
        "inference_fixed",
        "inference_variable",
    }
    for name, scenario in result["scenarios"].items():
        ours, theirs, ratio = scenario["ours"], scenario["theirs"], scenario["ratio"]
        assert name == f"{scenario['phase']}_{scenario['mode']}"
        # Same documents on both sides: same real and masked tokens, different padding.
        assert ours["real_tokens_per_step"] == theirs["real_tokens_per_step"] > 0
        assert ours["masked_tokens_per_step"] == theirs["masked_tokens_per_step"] > 0
        assert ours["tokens_per_s"] > 0 and theirs["tokens_per_s"] > 0
        assert ratio["tokens_per_s"] == pytest.approx(ours["tokens_per_s"] / theirs["tokens_per_s"])
        assert ratio["peak_memory_bytes"] is None  # the tiny preset does not measure memory
        assert (
            "sparse" in ours["loss_method"] and "sparse_prediction=False" in theirs["loss_method"]
        )
        if scenario["phase"] == "train":
            # Same weights, same batch, fp32: the first losses agree.
            assert ours["first_loss"] == pytest.approx(theirs["first_loss"], rel=1e-4)
        if scenario["mode"] == "fixed":
            assert ours["padded_tokens_per_step"] == theirs["padded_tokens_per_step"]
        else:  # transformers pads every document to the batch's longest
            assert theirs["padded_tokens_per_step"] > ours["real_tokens_per_step"]


def test_rss_memory_probe_runs_one_side_in_a_subprocess():
    from modernbert.bench.memory import rss_peak
    from modernbert.bench.sides import build_ours

    preset = get_preset("tiny")
    config = preset.model_config(64, "sdpa")
    model = build_ours(config, 0, torch.device("cpu"))
    rng = np.random.default_rng(0)
    docs = variable_docs(rng, 2, 64, config.vocab_size, 0.3, TokenIds(), preset.lengths)
    options = {"warmup": 1, "steps": 1, "lr": 1e-4, "hf_sparse": False}
    mem = rss_peak(
        "theirs", "train", config.to_dict(), model.state_dict(), [padded_batch(docs, 0)], options
    )
    params = list(model.parameters())
    # fp32 weights + AdamW exp_avg and exp_avg_sq + one fp32 step count per tensor
    expected = 3 * 4 * sum(p.numel() for p in params) + 4 * len(params)
    assert mem["state_bytes"] == expected
    assert mem["peak_bytes"] > 0 and mem["hwm_bytes"] >= mem["peak_bytes"]
    with pytest.raises(ValueError, match="side_name"):
        rss_peak("mine", "train", config.to_dict(), {}, [], options)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_preset_on_cuda_reports_memory_and_mfu():
    from modernbert.bench.runner import run_benchmark

    preset = get_preset("tiny").replace(
        device="cuda", autocast_dtype="bfloat16", memory="cuda", backends=("auto",)
    )
    result = run_benchmark(preset, progress=lambda _: None)
    assert result["peak_bf16_matmul_tflops"] > 0
    for scenario in result["scenarios"].values():
        for side in ("ours", "theirs"):
            entry = scenario[side]
            assert entry["peak_memory_bytes"] > entry["memory"]["state_bytes"] > 0
            assert 0 < entry["mfu"] < 1


def test_profile_writes_an_op_table_per_side_and_scenario(tmp_path):
    args = ["speed", "--preset", "tiny", "--repeats", "1", "--threads", "1", "--phases", "train"]
    args += ["--modes", "variable", "--profile", str(tmp_path / "prof")]
    threads = torch.get_num_threads()
    try:
        assert bench_main(args) == 0
    finally:
        torch.set_num_threads(threads)
    tables = {p.name: p.read_text() for p in (tmp_path / "prof").iterdir()}
    assert set(tables) == {"train_variable_ours.txt", "train_variable_theirs.txt"}
    for name, text in tables.items():
        assert "op calls in one train step" in text and "aten::" in text, name
