"""Training curves from a run's metrics file (the `jsonl` logger's, one JSON line per step).

`plot(paths, output)` draws one PNG with three panels against tokens trained: loss (train,
and eval when present), learning rate, and throughput (real tokens per second). Each file is
one line per panel, labelled by its run folder; several files show phases side by side. A
resumed run appends replayed steps to its file: the last record of a step wins. A missing
file or a line that is not a JSON record with a `step` raises one clear error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

TRAIN_LOSS = "loss/train/total"
THROUGHPUT = "throughput/tokens_per_sec"


def read_metrics(path: Path) -> list[dict]:
    """The records of one file in step order, one per step (the last written wins)."""
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    by_step: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
        if "step" not in record:
            raise ValueError(f"{path}:{number}: record has no 'step'")
        by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def eval_loss_key(records: list[dict]) -> str | None:
    """The evaluation loss metric, e.g. `metrics/eval/LanguageCrossEntropy` (None if absent)."""
    keys = sorted({k for r in records for k in r if k.startswith("metrics/eval/")})
    for key in keys:
        name = key.lower()
        if "loss" in name or "crossentropy" in name:
            return key
    return None


def lr_key(records: list[dict]) -> str | None:
    """The first parameter group's LR as logged by Composer's LRMonitor."""
    keys = sorted({k for r in records for k in r if k.startswith("lr-")})
    return next((k for k in keys if k.endswith("group0")), keys[0] if keys else None)


def series(records: list[dict], key: str | None) -> tuple[list[float], list[float]]:
    """(tokens, value) pairs of `key` over the records that have both."""
    if key is None:
        return [], []
    pairs = [(r["tokens"], r[key]) for r in records if key in r and r.get("tokens") is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot(paths: list[Path], output: Path) -> dict[str, int]:
    """Draw the panels into `output`; returns how many points each panel got (for checks)."""
    fig, (ax_loss, ax_lr, ax_speed) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    counts = {"loss": 0, "eval_loss": 0, "lr": 0, "throughput": 0}
    for index, path in enumerate(paths):
        records = read_metrics(path)
        label = path.parent.name or path.stem
        color = f"C{index % 10}"  # one colour per run across the panels
        x, y = series(records, TRAIN_LOSS)
        ax_loss.plot(x, y, color=color, label=f"{label} train")
        counts["loss"] += len(x)
        x, y = series(records, eval_loss_key(records))
        if x:
            ax_loss.plot(x, y, "o--", color=color, label=f"{label} eval")
            counts["eval_loss"] += len(x)
        x, y = series(records, lr_key(records))
        ax_lr.plot(x, y, color=color, label=label)
        counts["lr"] += len(x)
        x, y = series(records, THROUGHPUT)
        ax_speed.plot(x, y, color=color, label=label)
        counts["throughput"] += len(x)
    ax_loss.set_ylabel("MLM loss")
    ax_lr.set_ylabel("learning rate")
    ax_speed.set_ylabel("tokens / s")
    ax_speed.set_xlabel("tokens trained")
    for ax in (ax_loss, ax_lr, ax_speed):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return counts
