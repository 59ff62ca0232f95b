"""A non-null `metrics_file` is written whatever `loggers` lists (the jsonl logger is added)."""

from __future__ import annotations

import importlib.util

from conftest import REPO, read_losses, tiny_recipe, write_recipe


def _main():
    spec = importlib.util.spec_from_file_location("main_script", REPO / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_a_run_without_the_jsonl_logger_still_writes_its_metrics_file(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    recipe = tiny_recipe(
        tiny_corpus,
        run,
        max_duration="3ba",
        eval_loader=None,
        save_folder=None,
        loggers={"console": {}},  # no jsonl entry
        scheduler={"name": "constant_with_warmup", "t_warmup": "1ba"},
    )
    assert _main()([str(write_recipe(recipe, run / "r.yaml"))]) == 0
    assert sorted(read_losses(run / "metrics.jsonl")) == [0, 1, 2]
