"""Every benchmark of the framework, one subcommand each (`--help` lists them).

    python scripts/bench.py speed --preset cpu --json runs/bench_cpu.json
    python scripts/bench.py loss-memory [--device cuda]
    python scripts/bench.py train-loop yamls/demo/pretrain.yaml --steps 40 --skip 10
    python scripts/bench.py quality compare | quality golden [--update]
    python scripts/bench.py loader --workers 0 2 | loader --scale 1e7 1e8
    python scripts/bench.py convert --max-mb 20
    python scripts/bench.py train-run summarize METRICS.jsonl --window 50

Logic: `modernbert.bench` (the subcommands: `modernbert.bench.cli`); method and figures:
docs/benchmarks.md.
"""

import sys
from pathlib import Path

try:
    import modernbert.bench  # noqa: F401
except ImportError:  # a bare checkout (e.g. a GPU box with torch only): use src/ directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modernbert.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
