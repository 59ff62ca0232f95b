"""Tokens/s of the whole training loop (`python main.py RECIPE`) vs the bare model step.

    python scripts/bench_train_loop.py yamls/demo/pretrain.yaml --steps 40 --skip 10
    python scripts/bench_train_loop.py RECIPE key=value ... --json runs/bench_loop.json

Same model config, batches (from the recipe's loader), optimizer, precision and
microbatching on both sides; the ratio loop / model-only shows what the loader, Composer,
callbacks and loggers add. Method: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("recipe", type=Path)
    p.add_argument("overrides", nargs="*", help="key=value recipe overrides")
    p.add_argument("--steps", type=int, default=40, help="batches per run")
    p.add_argument("--skip", type=int, default=10, help="warm-up batches left out of the figure")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from modernbert.bench.loop import run_loop_benchmark

    args = parse_args(argv)
    if not args.recipe.is_file():
        raise FileNotFoundError(f"recipe file not found: {args.recipe}")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        result = run_loop_benchmark(
            args.recipe, args.overrides, args.steps, args.skip, Path(tmp), REPO / "main.py"
        )
    print(
        f"whole loop {result['loop']['tokens_per_s']:,.0f} tok/s, model only "
        f"{result['model_only']['tokens_per_s']:,.0f} tok/s -> ratio {result['ratio']:.3f} "
        f"(overhead {result['overhead_pct']:.1f}%) on {result['device']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
