"""The one benchmark command line, `scripts/bench.py SUBCOMMAND ...`: subcommands by name.

Each entry of `COMMANDS` names a module of this package that provides
`add_arguments(parser)` and `run(args) -> int` (the exit status). A module is imported only
when its subcommand is named, so `speed` runs on a box with torch and transformers alone and
`--help` answers at once. A user error (bad value, missing file) ends in one `error: ...` line
and exit status 1. Subcommands that fan out to child processes start them with
`child_command` / `child_env`, so the children run this same code whatever the working folder.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from modernbert.errors import UserError

SRC = Path(__file__).resolve().parents[2]  # the folder that holds the `modernbert` package


@dataclass(frozen=True)
class Command:
    """A subcommand: the module that implements it and its one-line purpose."""

    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "speed": Command(
        "modernbert.bench.speed",
        "our model vs transformers' ModernBertForMaskedLM: tokens/s, peak memory, MFU",
    ),
    "loss-memory": Command(
        "modernbert.model.loss_memory",
        "peak memory of the MLM head + loss, plain vs chunked (the model's loss)",
    ),
    "train-loop": Command(
        "modernbert.bench.loop", "tokens/s of the whole loop (main.py) vs the bare model step"
    ),
    "train-run": Command(
        "modernbert.bench.train_run",
        "figures of a run's metrics file, or a kernel profile of a recipe's steps",
    ),
    "quality": Command(
        "modernbert.bench.quality_runs",
        "learning efficiency: ours vs a plain transformers loop; the golden loss file",
    ),
    "loader": Command(
        "modernbert.bench.loader_speed",
        "MLM loader throughput on synthetic shards, and its planning cost at corpus scale",
    ),
    "convert": Command(
        "modernbert.bench.conversion_speed",
        "data-prep conversion throughput vs plain tokenizers, and its peak memory",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s own arguments are added (its module is imported)."""
    parser = argparse.ArgumentParser(
        prog="bench.py", description="Benchmarks of the framework (docs/benchmarks.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, entry in COMMANDS.items():
        child = sub.add_parser(
            name,
            help=entry.help,
            description=entry.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == command:
            module = importlib.import_module(entry.module)
            child.epilog = module.__doc__
            module.add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the subcommand, return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command].module)
    try:
        return module.run(args)
    except (FileNotFoundError, ValueError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def child_command(*args: str) -> list[str]:
    """The argv that runs `bench.py ARGS...` in a child process with this interpreter."""
    return [sys.executable, "-m", "modernbert.bench.cli", *args]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with our package first on PYTHONPATH, plus `extra`."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{path}" if path else str(SRC), **extra}


if __name__ == "__main__":
    sys.exit(main())
