r"""`bench.py quality`: the learning-efficiency benchmark's command line (logic: quality.py).

    python scripts/bench.py quality compare                      # ours vs plain, seeds 17-25
    python scripts/bench.py quality compare --runs ours plain:rows=unpacked   # paired: same data
    python scripts/bench.py quality compare --runs "ours:batch_size_warmup=null"  # issue's set-up
    python scripts/bench.py quality compare --tokens 400000 --seeds 17 \
        --runs plain plain:model=ours plain:optimizer=stable_adamw "ours:optimizer.name=decoupled_adamw"
    python scripts/bench.py quality golden [--update]            # tests/golden/tiny_losses.json

`compare` trains every (run spec, seed) pair in its own process, at most `--parallel` at a
time, each with one torch thread under `nice`, so that two runs share a 2-core box evenly;
each result is a JSON file in `--out`, reused when it exists (an interrupted comparison
continues where it stopped). A run spec is `SIDE[:key=value;key=value...]`: for `plain`, the
keys of `PlainParts` (model, optimizer, masking, rows) swap its parts; every other key is a
recipe override (`optimizer.lr=1e-3`), applied to both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import time
from pathlib import Path

from .cli import child_command, child_env
from .quality import Budget, PlainParts, RunResult, run_one, run_overrides, summary_table

_PART_KEYS = {f.name for f in dataclasses.fields(PlainParts)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One configuration to train over several seeds."""

    side: str
    parts: PlainParts | None
    overrides: tuple[str, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        side, _, rest = text.partition(":")
        if side not in ("ours", "plain"):
            raise ValueError(f"run spec {text!r}: the side must be 'ours' or 'plain'")
        items = [i for i in rest.split(";") if i]
        bad = [i for i in items if "=" not in i]
        if bad:
            raise ValueError(f"run spec {text!r}: {bad} is not key=value")
        parts = [i for i in items if i.split("=", 1)[0] in _PART_KEYS]
        if parts and side != "plain":
            raise ValueError(f"run spec {text!r}: {parts} apply to the plain side only")
        overrides = tuple(i for i in items if i not in parts)
        plain = PlainParts.parse(",".join(parts)) if side == "plain" else None
        return cls(side, plain, overrides, text)

    def file_name(self, seed: int, budget: Budget, recipe: Path, shuffle_offset: int = 0) -> str:
        """Result file of this spec for one seed; a changed recipe, budget, shuffle offset or
        set of fixed overrides (`run_overrides`) is a new run."""
        fixed = run_overrides(0, budget, Path("metrics.jsonl"))
        parts = [self.text, dataclasses.asdict(budget), recipe.read_text(), fixed]
        key = json.dumps(parts + ([shuffle_offset] if shuffle_offset else [])).encode()
        return f"{hashlib.sha1(key).hexdigest()[:12]}-{seed}.json"


def _budget(args: argparse.Namespace) -> Budget:
    clip = None if args.max_grad_norm <= 0 else args.max_grad_norm
    return Budget(args.tokens, args.warmup_fraction, args.alpha_f, clip)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", type=Path, default=Path("yamls/demo/pretrain.yaml"))
    p.add_argument("--tokens", type=int, default=Budget.tokens, help="real tokens per run")
    p.add_argument("--warmup-fraction", type=float, default=Budget.warmup_fraction)
    p.add_argument("--alpha-f", type=float, default=Budget.alpha_f)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="<= 0: no clipping")
    p.add_argument("--data", type=Path, default=Path("demo_out"), help="demo corpus folder")
    p.add_argument(
        "--shuffle-offset",
        type=int,
        default=0,
        help="the loader's shuffle seed is the run seed + this (0: equal seeds, as the recipes)",
    )


def _run(args: argparse.Namespace) -> int:
    spec = RunSpec.parse(args.spec)
    torch_threads(args.threads)
    result = run_one(
        spec.side,
        args.recipe,
        args.seed,
        _budget(args),
        args.json.with_suffix(""),  # this run's own folder (metrics file)
        list(spec.overrides),
        spec.parts,
        label=args.spec
        + (f" (shuffle seed + {args.shuffle_offset})" if args.shuffle_offset else ""),
        shuffle_offset=args.shuffle_offset,
    )
    args.json.write_text(json.dumps(dataclasses.asdict(result)))
    print(f"{args.spec} seed {args.seed}: val loss {result.val_loss:.4f} ({result.seconds:.0f} s)")
    return 0


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _compare(args: argparse.Namespace) -> int:
    from .quality_data import ensure_demo_data

    ensure_demo_data(args.data)
    budget = _budget(args)
    specs = [RunSpec.parse(s) for s in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (s, seed, args.out / s.file_name(seed, budget, args.recipe, args.shuffle_offset))
        for s in specs
        for seed in args.seeds
    ]
    todo = [j for j in jobs if not j[2].exists()]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done, {args.parallel} at a time")
    running: list[tuple[subprocess.Popen, Path]] = []
    env = child_env(OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    while todo or running:
        while todo and len(running) < args.parallel:
            spec, seed, path = todo.pop(0)
            cmd = ["nice", "-n", "10", *child_command("quality", "run", "--spec", spec.text,
                   "--seed", str(seed), "--json", str(path), "--threads", str(args.threads),
                   *_common_argv(args))]  # fmt: skip
            log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
            running.append(
                (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), path)
            )
        time.sleep(2)
        for proc, path in list(running):
            if proc.poll() is not None:
                running.remove((proc, path))
                status = (
                    "done" if proc.returncode == 0 else f"FAILED (see {path.with_suffix('.log')})"
                )
                print(f"{path.name}: {status}", flush=True)
    results = [RunResult(**json.loads(p.read_text())) for _, _, p in jobs if p.exists()]
    print(f"\nbudget: {budget}\nrecipe: {args.recipe}\n")
    print(summary_table(results))
    if args.curves:
        for r in results:
            steps = [s for s in (0, 50, 100, 150, 200, 250, 300) if s < len(r.train_losses)]
            print(r.label, r.seed, " ".join(f"{s}:{r.train_losses[s]:.2f}" for s in steps))
    return 0 if len(results) == len(jobs) else 1  # a failed run is named above


def _common_argv(args: argparse.Namespace) -> list[str]:
    return [
        "--recipe", str(args.recipe), "--tokens", str(args.tokens),
        "--warmup-fraction", str(args.warmup_fraction), "--alpha-f", str(args.alpha_f),
        "--max-grad-norm", str(args.max_grad_norm), "--data", str(args.data),
        "--shuffle-offset", str(args.shuffle_offset),
    ]  # fmt: skip


def _golden(args: argparse.Namespace) -> int:
    import tempfile

    from .golden import GOLDEN_FILE, compare, golden_losses, read_golden, write_golden

    with tempfile.TemporaryDirectory() as tmp:
        losses = golden_losses(Path(tmp))
    if args.update:
        write_golden(losses)
        print(f"wrote {len(losses)} losses to {GOLDEN_FILE}")
        return 0
    problems = compare(losses, read_golden())
    print("\n".join(problems) or f"the {len(losses)} losses match {GOLDEN_FILE}")
    return 1 if problems else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="quality", required=True)
    cmp = sub.add_parser("compare", help="train run specs x seeds, print the table")
    _add_common(cmp)
    cmp.add_argument("--runs", nargs="+", default=["ours", "plain"], help="run specs")
    # nine seeds: one run's loss moves by ~0.05 with the data order alone (docs/benchmarks.md)
    cmp.add_argument("--seeds", type=int, nargs="+", default=list(range(17, 26)))
    cmp.add_argument("--parallel", type=int, default=2)
    cmp.add_argument("--threads", type=int, default=1, help="torch threads per run")
    cmp.add_argument("--out", type=Path, default=Path("demo_out/quality"))
    cmp.add_argument("--curves", action="store_true", help="print training losses too")
    one = sub.add_parser("run", help="one run (what compare starts)")
    _add_common(one)
    one.add_argument("--spec", required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--json", type=Path, required=True)
    one.add_argument("--threads", type=int, default=1)
    gold = sub.add_parser("golden", help="check (or --update) tests/golden/tiny_losses.json")
    gold.add_argument("--update", action="store_true", help="rewrite the file from a fresh run")


_ACTIONS = {"compare": _compare, "run": _run, "golden": _golden}


def run(args: argparse.Namespace) -> int:
    return _ACTIONS[args.quality](args)
