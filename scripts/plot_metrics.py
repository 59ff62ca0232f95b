"""Plot training curves (loss, LR, throughput vs tokens) from runs' metrics files.

    python scripts/plot_metrics.py runs/NAME/metrics.jsonl [more files] --output curves.png

Logic and the panels: `modernbert.metrics_plot`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modernbert.metrics_plot import plot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="metrics.jsonl files")
    parser.add_argument("--output", type=Path, default=Path("curves.png"), help="PNG to write")
    args = parser.parse_args(argv)
    try:
        counts = plot(args.files, args.output)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({counts['loss']} train-loss points, {counts['lr']} LR points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
