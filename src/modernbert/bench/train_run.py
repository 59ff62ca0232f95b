"""`bench.py train-run`: figures of a real training run (`main.py`), and a kernel profile of
the same recipe's steps.

    python scripts/bench.py train-run summarize METRICS.jsonl --window 50 [--json OUT]
    python scripts/bench.py train-run profile RECIPE.yaml --out DIR [key=value ...]

`summarize` reads the run's jsonl: tokens/s and MFU of the speed monitor's last window (it
counts real tokens and bench/flops.py model FLOPs from each batch's host-side lengths), the
peak allocated memory (memory_monitor) and the first and last losses. `profile` runs bare
training steps of the recipe (bench/loop.py: same model, compiled regions, optimizer,
precision, microbatching and loader batches; no Composer) under torch.profiler and writes the
ops and kernels that take the most device time, so a partial GPU session still names them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

TOKENS_KEY = "throughput/tokens_per_sec"
MFU_KEY = "throughput/mfu"
PEAK_MEMORY_KEY = "memory/peak_allocated_mem"  # Composer's MemoryMonitor, in GB
LOSS_KEY = "loss/train/total"


def summarize_run(metrics_file: Path, window: int) -> dict[str, Any]:
    """The speed monitor's figures at the run's last step and what the run held in memory."""
    rows = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line]
    speed = [r for r in rows if TOKENS_KEY in r]
    if not speed:
        raise ValueError(f"{metrics_file} holds no {TOKENS_KEY!r}: is speed_monitor on?")
    last = speed[-1]
    steps = max(int(r["step"]) for r in rows)
    losses = {int(r["step"]): r[LOSS_KEY] for r in rows if LOSS_KEY in r}
    peaks = [r[PEAK_MEMORY_KEY] for r in rows if PEAK_MEMORY_KEY in r]
    return {
        "steps": steps,
        # the speed monitor's window: `window` batches once the run is past it (a run cut
        # short by a time limit reports over the batches it had)
        "window_steps": min(window, int(last["step"]) - 1),
        "window_end_step": int(last["step"]),
        "tokens_per_s": last[TOKENS_KEY],
        "device_tokens_per_s": last.get("throughput/device/tokens_per_sec"),
        "mfu": last.get(MFU_KEY),
        "peak_allocated_gb": max(peaks) if peaks else None,
        "first_loss": losses[min(losses)] if losses else None,
        "last_loss": losses[max(losses)] if losses else None,
    }


def profile_recipe_steps(
    recipe: Path, overrides: list[str], out: Path, warmup: int = 3, steps: int = 2
) -> dict[str, Any]:
    """torch.profiler tables of `steps` bare training steps after `warmup` (compilation)."""
    from torch.profiler import ProfilerActivity, profile

    from ..train.config import load_recipe
    from .loop import recipe_steps

    cfg = load_recipe(recipe, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    step, batches, settings = recipe_steps(cfg, warmup + steps, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for batch in batches[:warmup]:
        step(batch)
    sync()
    warmup_s = time.perf_counter() - start
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for batch in batches[warmup:]:
            step(batch)
        sync()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_step_top_ops.txt").write_text(events.table(sort_by=sort_by, row_limit=40))
    info = {
        "device": str(device),
        "profiled_steps": steps,
        "warmup_steps": warmup,
        "warmup_s": warmup_s,
        "op_calls_per_step": sum(e.count for e in events) / steps,
        **settings,
    }
    (out / "train_step_profile.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="train_run", required=True)
    summary = commands.add_parser("summarize", help="figures of a run's metrics jsonl")
    summary.add_argument("metrics", type=Path)
    summary.add_argument("--window", type=int, required=True)
    summary.add_argument("--json", type=Path)
    prof = commands.add_parser("profile", help="kernel profile of a recipe's bare steps")
    prof.add_argument("recipe", type=Path)
    prof.add_argument("--out", type=Path, required=True)
    prof.add_argument("--warmup", type=int, default=3)
    prof.add_argument("--steps", type=int, default=2)
    prof.add_argument("overrides", nargs="*")


def run(args: argparse.Namespace) -> int:
    if args.train_run == "summarize":
        result = summarize_run(args.metrics, args.window)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    else:
        result = profile_recipe_steps(
            args.recipe, args.overrides, args.out, args.warmup, args.steps
        )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
