"""`bench.py train-loop`: the whole training loop vs the bare model step (what the loader
and Composer cost).

    python scripts/bench.py train-loop yamls/demo/pretrain.yaml --steps 40 --skip 10
    python scripts/bench.py train-loop RECIPE key=value ... --json runs/bench_loop.json

The loop figure is `python main.py RECIPE` itself, read from its metrics jsonl (the
`speed_monitor` callback counts real tokens over a window that starts after warm-up). The
model-only figure runs the same model config on batches taken from the same loader, with
the recipe's optimizer, precision and microbatching, and nothing else: no Composer, no
dataloader in the timed region, no callbacks or loggers. Both sides use the same model
config, batches, optimizer, precision and microbatching; the ratio loop / model-only is the
result (`run_loop_benchmark` returns every figure as a dict).

Needs the training stack (Composer, streaming), unlike the rest of `modernbert.bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..model import ModernBertForMaskedLM

THROUGHPUT_KEY = "throughput/tokens_per_sec"
MAIN_PY = Path(__file__).resolve().parents[3] / "main.py"  # the checkout's training entry


def loop_overrides(steps: int, skip: int, metrics_file: Path) -> list[str]:
    """Overrides that make a recipe a clean, short, timed run of `steps` full-size batches."""
    if steps <= skip or skip < 1:
        raise ValueError(f"need 1 <= skip < steps, got skip={skip}, steps={steps}")
    return [
        f"max_duration={steps}ba",
        f"callbacks.speed_monitor.window_size={steps - skip}",
        "loggers.jsonl={}",
        f"metrics_file={metrics_file}",
        "run_name=bench-loop",
        "batch_size_warmup=null",
        "eval_loader=null",
        "save_folder=null",
        "autoresume=false",
        "load_path=null",
    ]


def run_training_loop(
    main_py: Path, recipe: Path, overrides: list[str], env: dict[str, str] | None = None
) -> str:
    """Run `python main.py recipe overrides...`; return its output, raise if it failed."""
    proc = subprocess.run(
        [sys.executable, str(main_py), str(recipe), *overrides],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"main.py {recipe} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def loop_throughput(metrics_file: Path, steps: int) -> dict[str, Any]:
    """Real tokens/s of the window that ends at the last step (the post-warm-up batches)."""
    if not metrics_file.is_file():
        raise FileNotFoundError(f"metrics file not found: {metrics_file}")
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    figures = {int(r["step"]): r[THROUGHPUT_KEY] for r in rows if THROUGHPUT_KEY in r}
    if not figures:
        raise ValueError(f"{metrics_file} holds no {THROUGHPUT_KEY!r}: is speed_monitor on?")
    last = max(figures)
    if last != steps:
        raise ValueError(f"{metrics_file}: last throughput at step {last}, expected {steps}")
    return {"tokens_per_s": figures[last], "step": last}


def recipe_steps(cfg: Any, steps: int, device: torch.device) -> tuple[Callable, list, dict]:
    """(one bare training step, `steps` loader batches on `device`, settings) for the recipe's
    model, optimizer, precision and microbatching: what a trainer step does, without Composer."""
    from composer.utils import reproducibility

    from ..data.flat import layout_of, model_inputs, split_flat_batch
    from ..data.loader import build_mlm_dataloader
    from ..data.tokenizer import TokenSpec, load_tokenizer
    from ..train.optim import build_optimizer
    from ..train.trainer import compile_config_for, microbatch_size_for, precision_for

    tokens = TokenSpec.from_tokenizer(load_tokenizer(cfg.tokenizer))
    loader = build_mlm_dataloader(
        cfg.train_loader, tokens, cfg.global_train_batch_size, seed=cfg.seed
    )
    batches = []
    for batch in loader:  # tensors moved before timing; the layout stays on the host
        batches.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
        if len(batches) == steps:
            break
    if len(batches) < steps:
        raise ValueError(f"the training data holds {len(batches)} batches, fewer than {steps}")
    reproducibility.seed_all(cfg.seed)
    model = ModernBertForMaskedLM(cfg.model).to(device).train()
    if cfg.compile:  # the regions the trainer compiles
        model.compile_regions(**compile_config_for(cfg))
    optimizer = build_optimizer(cfg.optimizer, model)
    micro = microbatch_size_for(cfg)
    amp = precision_for(cfg) == "amp_bf16"

    def step(batch: dict) -> None:
        masked = layout_of(batch).num_masked  # microbatches weighted as the trainer does
        for part in split_flat_batch(batch, micro):
            autocast = (
                torch.autocast(device.type, torch.bfloat16) if amp else contextlib.nullcontext()
            )
            with autocast:
                loss = model(**model_inputs(part)).loss
            (loss * layout_of(part).num_masked / max(masked, 1)).backward()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, batches, {"microbatch_rows": micro, "precision": "amp_bf16" if amp else "fp32"}


def model_only_throughput(cfg: Any, steps: int, skip: int, device: torch.device) -> dict:
    """Tokens/s of bare training steps on the recipe's model, optimizer and batches."""
    from ..data.flat import layout_of

    step, batches, settings = recipe_steps(cfg, steps, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for batch in batches[:skip]:
        step(batch)
    sync()
    start = time.perf_counter()
    for batch in batches[skip:]:
        step(batch)
    sync()
    elapsed = time.perf_counter() - start
    real = sum(layout_of(b).num_tokens for b in batches[skip:])
    return {
        "tokens_per_s": real / elapsed,
        "step_time_s": elapsed / (steps - skip),
        "real_tokens_per_step": real / (steps - skip),
        "rows_per_step": statistics.mean(layout_of(b).num_rows for b in batches[skip:]),
        **settings,
    }


def run_loop_benchmark(
    recipe: Path,
    overrides: list[str],
    steps: int,
    skip: int,
    workdir: Path,
    main_py: Path,
) -> dict[str, Any]:
    """Model-only, whole loop, model-only again (the pair brackets drifts in machine speed)."""
    from ..train.config import load_recipe

    metrics = workdir / "metrics.jsonl"
    if metrics.exists():
        metrics.unlink()
    all_overrides = [*overrides, *loop_overrides(steps, skip, metrics)]
    cfg = load_recipe(recipe, all_overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    before = model_only_throughput(cfg, steps, skip, device)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    run_training_loop(main_py, recipe, all_overrides, env)
    loop = loop_throughput(metrics, steps)
    after = model_only_throughput(cfg, steps, skip, device)
    model_only = (before["tokens_per_s"] + after["tokens_per_s"]) / 2
    return {
        "recipe": str(recipe),
        "overrides": all_overrides,
        "device": str(device),
        "steps": steps,
        "warmup_steps": skip,
        "loop": {
            **loop,
            "source": f"{metrics.name} {THROUGHPUT_KEY} over the last {steps - skip} batches",
        },
        "model_only": {"tokens_per_s": model_only, "before": before, "after": after},
        "ratio": loop["tokens_per_s"] / model_only,
        "overhead_pct": 100.0 * (1.0 - loop["tokens_per_s"] / model_only),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path)
    p.add_argument("overrides", nargs="*", help="key=value recipe overrides")
    p.add_argument("--steps", type=int, default=40, help="batches per run")
    p.add_argument("--skip", type=int, default=10, help="warm-up batches left out of the figure")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--main-py", type=Path, default=MAIN_PY, help="the training entry to time")


def run(args: argparse.Namespace) -> int:
    import tempfile

    for path, what in ((args.recipe, "recipe"), (args.main_py, "training entry")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        result = run_loop_benchmark(
            args.recipe, args.overrides, args.steps, args.skip, Path(tmp), args.main_py
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
    return 0
