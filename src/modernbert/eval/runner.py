"""A whole evaluation: every task x learning rate x seed, the MNLI hand-off, the records.

Writes OUTPUT/results.json and OUTPUT/results.md (the report), OUTPUT/metrics.jsonl (one
JSON line per training-loss or evaluation record, as pretraining's jsonl logger) and, with a
W&B project, the same records to one W&B run. MNLI's fine-tuned encoders (best LR, one per
seed) are kept in OUTPUT/checkpoints/ for RTE, MRPC and STS-B to start from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import torch

from modernbert.eval.data import TRAIN_SPLIT, load_task_data, tokenize
from modernbert.eval.finetune import RunSpec, finetune, steps_per_epoch
from modernbert.eval.report import build_report, markdown_table, pick_lr, summarize_task
from modernbert.eval.tasks import MNLI, TaskSpec

DEFAULT_MAX_SEQ_LEN = 512  # GLUE examples are short; the collator pads per batch


@dataclass
class EvalOptions:
    """One evaluation; None for lrs/epochs/batch_size means the task table's values."""

    model: Path  # a Hugging Face ModernBERT folder (scripts/export_hf.py output)
    tasks: list[TaskSpec]
    seeds: list[int]
    output: Path
    data_dir: Path | None = None  # DIR/<task> saved with datasets; None: load_dataset (network)
    lrs: tuple[float, ...] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    from_mnli: bool = True  # RTE/MRPC/STS-B start from MNLI when MNLI is among the tasks
    wandb_project: str | None = None
    progress: bool = True
    device: str | None = None  # None: cuda when available, else cpu


class RecordLog:
    """metrics.jsonl (always) and a W&B run (optional) receive the same records."""

    def __init__(self, path: Path, wandb_project: str | None, config: dict[str, Any]) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._wandb = None
        if wandb_project:
            import wandb

            # the run's files go beside metrics.jsonl, whatever an earlier run set up
            self._wandb = wandb.init(
                project=wandb_project, config=config, job_type="eval", dir=str(path.parent)
            )

    def __call__(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._wandb is not None:
            prefix = f"{record['task']}/lr{record['lr']:g}/seed{record['seed']}"
            split = f"/{record['split']}" if "split" in record else ""
            numbers = {k: v for k, v in record.items() if isinstance(v, int | float)}
            self._wandb.log({f"{prefix}{split}/{k}": v for k, v in numbers.items()})

    def summary(self, report: dict[str, Any]) -> None:
        if self._wandb is not None:
            for name, task in report["tasks"].items():
                self._wandb.summary[f"{name}/score"] = task["score"]["mean"]
            self._wandb.summary["average"] = report["average"]

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def _recipe(task: TaskSpec, opts: EvalOptions) -> tuple[tuple[float, ...], int, int]:
    return (opts.lrs or task.lrs, opts.epochs or task.epochs, opts.batch_size or task.batch_size)


def run_eval(opts: EvalOptions) -> dict[str, Any]:
    """Fine-tune and evaluate every task; returns the report (also written to disk)."""
    from tqdm import tqdm
    from transformers import AutoTokenizer, DataCollatorWithPadding

    if not (opts.model / "config.json").is_file():
        raise FileNotFoundError(f"--model {opts.model}: no config.json (not a Hugging Face folder)")
    if not opts.seeds:
        raise ValueError("at least one seed is needed")
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(opts.model)
    collate = DataCollatorWithPadding(tokenizer)
    prepared = {}
    for task in opts.tasks:  # load and tokenize everything first: bad data fails early
        data = load_task_data(task, opts.data_dir)
        prepared[task.name] = {
            split: tokenize(task, data[split], tokenizer, opts.max_seq_len)
            for split in (TRAIN_SPLIT, *task.eval_splits)
        }
    total = 0
    for task in opts.tasks:
        lrs, epochs, batch = _recipe(task, opts)
        total += (
            len(lrs)
            * len(opts.seeds)
            * epochs
            * steps_per_epoch(len(prepared[task.name][TRAIN_SPLIT]), batch)
        )
    opts.output.mkdir(parents=True, exist_ok=True)
    config = {**asdict(opts), "tasks": [t.name for t in opts.tasks], "device": str(device)}
    config = json.loads(json.dumps(config, default=str))
    log = RecordLog(opts.output / "metrics.jsonl", opts.wandb_project, config)
    bar = tqdm(total=total, unit="step", desc="fine-tuning", disable=not opts.progress)
    mnli_start: dict[int, Path] = {}
    summaries = {}
    try:
        for task in opts.tasks:
            summaries[task.name] = _run_task(
                task, opts, prepared[task.name], collate, device, log, bar, mnli_start
            )
        report = build_report(str(opts.model), summaries)
        report["options"] = config
        log.summary(report)
    finally:
        bar.close()
        log.close()
    (opts.output / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (opts.output / "results.md").write_text(markdown_table(report))
    return report


def _run_task(
    task: TaskSpec,
    opts: EvalOptions,
    splits: dict[str, Any],
    collate: Any,
    device: torch.device,
    log: RecordLog,
    bar: Any,
    mnli_start: dict[int, Path],
) -> dict[str, Any]:
    """The task's LR grid x seeds; MNLI leaves its best-LR encoders in `mnli_start`."""
    lrs, epochs, batch = _recipe(task, opts)
    keep_mnli = task.name == MNLI and opts.from_mnli and any(t.from_mnli for t in opts.tasks)
    from_mnli = task.from_mnli and opts.from_mnli and bool(mnli_start)
    evals = {name: splits[name] for name in task.eval_splits}
    grid: dict[float, list[dict[str, dict[str, float]]]] = {}
    for lr in lrs:
        grid[lr] = []
        for seed in opts.seeds:
            bar.set_description(f"{task.name} lr={lr:g} seed={seed}")
            init = mnli_start[seed] if from_mnli else opts.model
            spec = RunSpec(task, init, lr, seed, epochs, batch)
            model, results = finetune(
                spec,
                splits[TRAIN_SPLIT],
                evals,
                collate,
                device,
                log,
                lambda: bar.update(1),
                from_mnli,
            )
            grid[lr].append(results)
            if keep_mnli:
                model.save_pretrained(_mnli_folder(opts.output, lr, seed))
            del model
    if keep_mnli:  # keep the best LR's encoders only
        best = pick_lr(task, grid)
        for lr in lrs:
            for seed in opts.seeds:
                if lr != best:
                    shutil.rmtree(_mnli_folder(opts.output, lr, seed))
        mnli_start.update({seed: _mnli_folder(opts.output, best, seed) for seed in opts.seeds})
    return summarize_task(task, grid, list(opts.seeds), MNLI if from_mnli else "model")


def _mnli_folder(output: Path, lr: float, seed: int) -> Path:
    return output / "checkpoints" / f"{MNLI}-lr{lr:g}-seed{seed}"
