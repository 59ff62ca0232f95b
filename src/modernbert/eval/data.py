"""A task's data: a folder saved with `datasets` (`--data DIR` holds DIR/<task>), or the
public dataset through `datasets.load_dataset` where a network exists; then tokenized."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modernbert.eval.tasks import TaskSpec

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
    from transformers import PreTrainedTokenizerBase

TRAIN_SPLIT = "train"
LABEL = "label"


def load_task_data(task: TaskSpec, data_dir: str | Path | None) -> DatasetDict:
    """The task's splits, checked for the columns and splits the task needs."""
    import datasets

    if data_dir is not None:
        folder = Path(data_dir) / task.name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"task {task.name}: no saved dataset at {folder} (expected "
                f"DatasetDict.save_to_disk output with splits {TRAIN_SPLIT}, "
                f"{', '.join(task.eval_splits)})"
            )
        data = datasets.load_from_disk(str(folder))
    elif task.hub is not None:
        data = datasets.load_dataset(*task.hub)
    else:
        raise ValueError(f"task {task.name} has no public dataset; build it and pass --data DIR")
    if not isinstance(data, datasets.DatasetDict):
        raise ValueError(
            f"task {task.name}: expected a DatasetDict with splits, got a single split"
        )
    _check_columns(task, data)
    return data


def _check_columns(task: TaskSpec, data: DatasetDict) -> None:
    for split in (TRAIN_SPLIT, *task.eval_splits):
        if split not in data:
            raise ValueError(f"task {task.name}: split {split!r} missing (found {', '.join(data)})")
        missing = [c for c in (*task.text_fields, LABEL) if c not in data[split].column_names]
        if missing:
            raise ValueError(
                f"task {task.name}: split {split!r} lacks column(s) {', '.join(missing)} "
                f"(has {', '.join(data[split].column_names)})"
            )
        if len(data[split]) == 0:
            raise ValueError(f"task {task.name}: split {split!r} is empty")


def tokenize(
    task: TaskSpec, split: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_len: int
) -> Dataset:
    """input_ids / attention_mask / labels (float for regression); padding is left to the
    collator, per batch."""

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        texts = [batch[field] for field in task.text_fields]
        out = tokenizer(*texts, truncation=True, max_length=max_seq_len)
        labels = batch[LABEL]
        out["labels"] = [float(x) for x in labels] if task.regression else [int(x) for x in labels]
        return dict(out)

    keep = ("input_ids", "attention_mask", "labels")
    encoded = split.map(encode, batched=True, remove_columns=split.column_names)
    return encoded.remove_columns([c for c in encoded.column_names if c not in keep])
