"""The GPU suite's training-run figures and step profile, exercised on the CPU."""

from __future__ import annotations

import json

import pytest

from modernbert.bench.train_run import profile_recipe_steps, summarize_run

from conftest import tiny_recipe, write_recipe


def test_summary_reads_the_last_window_and_the_peak_memory(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "tokens": 0, "loss/train/total": 9.0}]
    for step in range(1, 6):
        lines.append(
            {
                "step": step,
                "loss/train/total": 9.0 - step,
                "throughput/tokens_per_sec": 100.0 * step,
                "throughput/device/tokens_per_sec": 100.0 * step,
                "throughput/mfu": 0.01 * step,
                "memory/peak_allocated_mem": [3.0, 5.0, 4.0, 4.0, 4.0][step - 1],
            }
        )
    metrics.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    summary = summarize_run(metrics, window=3)
    assert summary["tokens_per_s"] == 500.0 and summary["mfu"] == pytest.approx(0.05)
    assert summary["window_steps"] == 3 and summary["window_end_step"] == 5
    assert summary["peak_allocated_gb"] == 5.0
    assert (summary["first_loss"], summary["last_loss"]) == (9.0, 4.0)
    assert summarize_run(metrics, window=50)["window_steps"] == 4  # a run cut short
    metrics.write_text(json.dumps({"step": 1, "loss/train/total": 1.0}) + "\n")
    with pytest.raises(ValueError, match="speed_monitor"):
        summarize_run(metrics, window=3)


def test_profile_of_a_recipe_writes_the_top_ops(tiny_corpus, tmp_path):
    recipe = tiny_recipe(tiny_corpus, tmp_path, eval_loader=None, save_folder=None)
    path = write_recipe(recipe, tmp_path / "recipe.yaml")
    info = profile_recipe_steps(path, [], tmp_path / "prof", warmup=1, steps=1)
    assert info["device"] == "cpu" and info["op_calls_per_step"] > 0
    table = (tmp_path / "prof" / "train_step_top_ops.txt").read_text()
    assert "aten::mm" in table or "aten::addmm" in table
    assert json.loads((tmp_path / "prof" / "train_step_profile.json").read_text()) == info
