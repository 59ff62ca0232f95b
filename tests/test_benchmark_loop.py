"""The whole-loop benchmark on the tiny corpus: main.py's own throughput vs model-only steps."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, tiny_recipe, write_recipe

pytest.importorskip("composer")


def test_loop_overrides_refuse_a_window_without_steps(tmp_path):
    from modernbert.bench.loop import loop_overrides

    with pytest.raises(ValueError, match="skip"):
        loop_overrides(steps=5, skip=5, metrics_file=tmp_path / "m.jsonl")


def test_loop_throughput_reads_the_last_window(tmp_path):
    from modernbert.bench.loop import loop_throughput

    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "throughput/tokens_per_sec": 100.0 * s} for s in (3, 4, 5)]
    metrics.write_text("\n".join(json.dumps(r) for r in [{"step": 1}, *rows]) + "\n")
    assert loop_throughput(metrics, 5) == {"tokens_per_s": 500.0, "step": 5}
    with pytest.raises(ValueError, match="expected 6"):
        loop_throughput(metrics, 6)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        loop_throughput(tmp_path / "nope.jsonl", 5)


@pytest.mark.slow
def test_loop_benchmark_runs_main_py_and_the_model_alone(tiny_corpus, tmp_path):
    from modernbert.bench.loop import run_loop_benchmark

    recipe = write_recipe(tiny_recipe(tiny_corpus, tmp_path), tmp_path / "recipe.yaml")
    result = run_loop_benchmark(
        recipe, [], steps=6, skip=2, workdir=tmp_path, main_py=REPO / "main.py"
    )
    assert result["loop"]["step"] == 6
    assert result["loop"]["tokens_per_s"] > 0
    only = result["model_only"]
    assert only["before"]["rows_per_step"] == 8  # the recipe's full batch, no warmup
    assert only["before"]["microbatch_rows"] == 4
    assert only["tokens_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["loop"]["tokens_per_s"] / only["tokens_per_s"])
