"""Crash and resume: a run killed with SIGKILL part-way and restarted with autoresume logs
exactly the per-step losses of an uninterrupted run (model, optimizer, schedule, data
position and RNG all restored from the checkpoint)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, read_losses, run_main, subprocess_env, tiny_recipe, write_recipe

STEPS = 40
KILL_AFTER_STEP = 13  # past the ba10 checkpoint, so steps 10..13 are replayed on resume


def _recipe(corpus, run_dir: Path) -> Path:
    recipe = tiny_recipe(
        corpus,
        run_dir,
        max_duration=f"{STEPS}ba",
        save_interval="10ba",
        autoresume=True,
        eval_loader=None,
        batch_size_warmup={"start_batch_size": 4, "warmup_tokens": 2000},
    )
    return write_recipe(recipe, run_dir / "recipe.yaml")


def _launch(recipe: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "main.py"), str(recipe)]
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=out, stderr=out)


def _last_step(metrics: Path) -> int:
    if not metrics.exists():
        return -1
    steps = read_losses(metrics)
    return max(steps) if steps else -1


def test_sigkill_then_autoresume_matches_uninterrupted_run(tiny_corpus, tmp_path):
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    reference = _launch(_recipe(tiny_corpus, reference_dir), tmp_path / "reference.log")
    crash_recipe = _recipe(tiny_corpus, crash_dir)
    crashing = _launch(crash_recipe, tmp_path / "crash.log")
    latest = crash_dir / "checkpoints" / "latest-rank0.pt"
    deadline = time.monotonic() + 240
    while not (latest.exists() and _last_step(crash_dir / "metrics.jsonl") >= KILL_AFTER_STEP):
        assert crashing.poll() is None, (tmp_path / "crash.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)
    os.kill(crashing.pid, signal.SIGKILL)
    assert crashing.wait() == -signal.SIGKILL
    killed_at = _last_step(crash_dir / "metrics.jsonl")
    assert KILL_AFTER_STEP <= killed_at < STEPS - 1

    run_main(crash_recipe)  # same command: autoresume finds the checkpoint
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    expected = read_losses(reference_dir / "metrics.jsonl")
    resumed = read_losses(crash_dir / "metrics.jsonl")
    assert sorted(expected) == sorted(resumed) == list(range(STEPS))
    mismatched = {s: (expected[s], resumed[s]) for s in expected if expected[s] != resumed[s]}
    assert not mismatched, mismatched

    # It really resumed from ba10: the steps after the checkpoint were logged twice, the
    # steps before it once.
    lines = (crash_dir / "metrics.jsonl").read_text().splitlines()
    loss_steps = [line for line in lines if '"loss/train/total"' in line]
    assert len(loss_steps) == STEPS + (killed_at - 10 + 1)
