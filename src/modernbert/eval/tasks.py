"""The task table: data columns, heads, metrics and fine-tuning recipe of every task.

The recipe follows the ModernBERT paper's GLUE protocol: a small learning-rate sweep
({1e-5, 3e-5, 5e-5, 8e-5}), a few epochs for the large tasks and more for the small ones,
several seeds per setting, and RTE, MRPC and STS-B starting from the MNLI checkpoint. The
per-task epochs, batch sizes and weight decay below are our choices inside that protocol,
not numbers copied from the paper. A task's score is the mean of its metrics (the GLUE
convention for MRPC/QQP F1 + accuracy and STS-B Pearson + Spearman).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_LRS = (1e-5, 3e-5, 5e-5, 8e-5)
MNLI = "mnli"
CODE_PROSE = "code_prose"


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task."""

    name: str
    text_fields: tuple[str, ...]  # one column (single sentence) or two (a pair)
    num_labels: int  # 1: regression (MSE head), else classes
    metrics: tuple[str, ...]  # names in metrics.METRICS; the score is their mean
    epochs: int
    batch_size: int
    lrs: tuple[float, ...] = PAPER_LRS
    weight_decay: float = 1e-5
    eval_splits: tuple[str, ...] = ("validation",)  # the first one decides the LR pick
    from_mnli: bool = False  # start from the MNLI fine-tuned encoder when MNLI runs too
    hub: tuple[str, ...] | None = None  # datasets.load_dataset arguments (None: local only)
    glue: bool = True  # part of the GLUE average

    @property
    def regression(self) -> bool:
        return self.num_labels == 1


GLUE_HUB = "nyu-mll/glue"  # the hub's GLUE (what load_dataset("glue", ...) redirects to)


def _glue(name: str, **kwargs) -> TaskSpec:
    return TaskSpec(name=name, hub=(GLUE_HUB, name), **kwargs)


TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        _glue("cola", text_fields=("sentence",), num_labels=2, metrics=("matthews",),
              epochs=5, batch_size=16),
        _glue("sst2", text_fields=("sentence",), num_labels=2, metrics=("accuracy",),
              epochs=2, batch_size=32),
        _glue("mrpc", text_fields=("sentence1", "sentence2"), num_labels=2,
              metrics=("f1", "accuracy"), epochs=5, batch_size=16, from_mnli=True),
        _glue("stsb", text_fields=("sentence1", "sentence2"), num_labels=1,
              metrics=("pearson", "spearman"), epochs=5, batch_size=16, from_mnli=True),
        _glue("qqp", text_fields=("question1", "question2"), num_labels=2,
              metrics=("f1", "accuracy"), epochs=2, batch_size=32),
        _glue("mnli", text_fields=("premise", "hypothesis"), num_labels=3,
              metrics=("accuracy",), epochs=1, batch_size=32,
              eval_splits=("validation_matched", "validation_mismatched")),
        _glue("qnli", text_fields=("question", "sentence"), num_labels=2,
              metrics=("accuracy",), epochs=2, batch_size=32),
        _glue("rte", text_fields=("sentence1", "sentence2"), num_labels=2,
              metrics=("accuracy",), epochs=5, batch_size=16, from_mnli=True),
        # Offline check on this machine's corpus (local.py builds it): is a snippet code or
        # prose? Small models (the demo's) want a larger learning rate than the paper's grid;
        # one LR keeps the demo's step to about a minute.
        TaskSpec(CODE_PROSE, text_fields=("text",), num_labels=2, metrics=("accuracy",),
                 epochs=3, batch_size=16, lrs=(1e-3,), glue=False),
    )
}  # fmt: skip


def get_tasks(names: str | list[str]) -> list[TaskSpec]:
    """Task specs by name (comma-separated or a list), MNLI first so that the tasks that
    start from it find its checkpoint; unknown names list the valid ones."""
    wanted = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names)]
    wanted = [n for n in dict.fromkeys(wanted) if n]
    unknown = [n for n in wanted if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; valid: {', '.join(TASKS)}")
    if not wanted:
        raise ValueError(f"no task given; valid: {', '.join(TASKS)}")
    return sorted((TASKS[n] for n in wanted), key=lambda t: t.name != MNLI)
