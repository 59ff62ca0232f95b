"""`bench.py speed`: our ModernBertForMaskedLM vs transformers' on the same documents.

    python scripts/bench.py speed --preset cpu --json runs/bench_cpu.json [--threads 1]
    PYTHONPATH=src python scripts/bench.py speed --preset gpu-base --json bench_gpu.json

Contract: picks a preset (`presets.py`, the one home of the benchmark's defaults), applies
the few overrides given here, runs it (`runner.run_benchmark`), prints the table and, with
`--json`, writes every figure (rewritten after each scenario, so a run cut short keeps what
it measured). Needs torch, transformers and this package only (no Composer, no hub).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .presets import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--seq-lens", type=int, nargs="+", help="override the preset's lengths")
    p.add_argument("--tokens-per-step", type=int)
    p.add_argument("--phases", nargs="+", choices=["train", "inference"])
    p.add_argument("--modes", nargs="+", choices=["fixed", "variable"])
    p.add_argument("--backends", nargs="+", help="our attention backends, first = 'ours'")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--memory", choices=["rss", "cuda", "off"])
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--profile",
        type=Path,
        help="write a torch.profiler table of one step of every side and scenario to this folder",
    )
    p.add_argument(
        "--no-loss-memory",
        action="store_true",
        help="skip the head + loss peak-memory figure (plain vs chunked at 10k x 50k)",
    )
    p.add_argument(
        "--hf-compile",
        action="store_true",
        help="let transformers torch.compile its MLP/head (its CUDA default); off: eager",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from .presets import get_preset
    from .report import format_table
    from .runner import run_benchmark

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    overrides = {
        "seq_lens": tuple(args.seq_lens) if args.seq_lens else None,
        "tokens_per_step": args.tokens_per_step,
        "phases": tuple(args.phases) if args.phases else None,
        "modes": tuple(args.modes) if args.modes else None,
        "backends": tuple(args.backends) if args.backends else None,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "steps": args.steps,
        "memory": args.memory,
        "hf_compile": True if args.hf_compile else None,
        "profile_dir": str(args.profile) if args.profile else None,
    }
    preset = get_preset(args.preset).replace(
        **{k: v for k, v in overrides.items() if v is not None}
    )
    if args.no_loss_memory:
        preset = preset.replace(loss_memory=None)

    def write_json(result: dict) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")

    result = run_benchmark(
        preset,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        on_scenario=write_json,  # partial figures survive a run cut short
    )
    print(format_table(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0
