"""Per-task summaries over seeds (mean +- sample std), the LR pick, the averages, and the
markdown table. Scores are fractions in the JSON and x100 in the table, as papers print."""

from __future__ import annotations

import statistics
from typing import Any

from modernbert.eval.tasks import TASKS, TaskSpec

SplitMetrics = dict[str, float]  # metric -> value for one run on one split
RunResult = dict[str, SplitMetrics]  # split -> metrics


def score(task: TaskSpec, metrics: SplitMetrics) -> float:
    """The task's score: the mean of its metrics (GLUE convention)."""
    return statistics.fmean(metrics[name] for name in task.metrics)


def mean_std(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std}


def pick_lr(task: TaskSpec, grid: dict[float, list[RunResult]]) -> float:
    """The learning rate with the best mean score over seeds on the first dev split."""
    split = task.eval_splits[0]
    return max(grid, key=lambda lr: statistics.fmean(score(task, r[split]) for r in grid[lr]))


def summarize_task(
    task: TaskSpec, grid: dict[float, list[RunResult]], seeds: list[int], start: str
) -> dict[str, Any]:
    best = pick_lr(task, grid)
    runs = grid[best]
    splits = {}
    for split in task.eval_splits:
        per_metric = {m: mean_std([r[split][m] for r in runs]) for m in task.metrics}
        scores = [score(task, r[split]) for r in runs]
        splits[split] = {"score": mean_std(scores), "per_seed": scores, "metrics": per_metric}
    first = task.eval_splits[0]
    return {
        "metrics": list(task.metrics),
        "best_lr": best,
        "seeds": seeds,
        "start": start,
        "score": splits[first]["score"],
        "splits": splits,
        "grid": {
            f"{lr:g}": mean_std([score(task, r[first]) for r in rs]) for lr, rs in grid.items()
        },
    }


def build_report(model: str, tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole evaluation: tasks, their average, and the GLUE average when all eight ran."""
    glue_names = [name for name, spec in TASKS.items() if spec.glue]
    means = {name: t["score"]["mean"] for name, t in tasks.items()}
    complete = all(name in tasks for name in glue_names)
    return {
        "model": model,
        "tasks": tasks,
        "average": statistics.fmean(means.values()),
        "glue_average": statistics.fmean(means[n] for n in glue_names) if complete else None,
    }


def _pm(stats: dict[str, float]) -> str:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def markdown_table(report: dict[str, Any]) -> str:
    """One row per task (and per extra dev split, e.g. MNLI mismatched), then the averages."""
    rows = [
        "| task | dev split | metric | score | best LR | seeds | start |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for name, t in report["tasks"].items():
        for split, s in t["splits"].items():
            metric = " / ".join(t["metrics"])
            rows.append(
                f"| {name} | {split} | {metric} | {_pm(s['score'])} | {t['best_lr']:g} "
                f"| {len(t['seeds'])} | {t['start']} |"
            )
    rows.append(
        f"| **average** ({len(report['tasks'])} tasks) | | | **{100 * report['average']:.1f}** | | | |"
    )
    if report["glue_average"] is not None:
        rows.append(f"| **GLUE average** | | | **{100 * report['glue_average']:.1f}** | | | |")
    return "\n".join(rows) + "\n"
