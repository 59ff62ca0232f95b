"""Composer checkpoint -> Hugging Face folder, and the run record that makes it possible.

A checkpoint holds state dicts only; to rebuild the model we also need its config (heads,
window, thetas... cannot be read off tensor shapes) and the tokenizer. Training therefore
saves a small run record twice: inside every checkpoint (as the ``RunRecord`` callback's
state, read with the safe loader) and as ``save_folder/run.json`` (for sharded checkpoints,
whose callback states would need unsafe unpickling).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.checkpoint import read_checkpoint

RUN_RECORD_FILE = "run.json"
RUN_RECORD_KEY = "RunRecord"  # the callback's class name: Composer's key for its state


class RunRecord(Callback):
    """Saves the model config, tokenizer and recipe with every checkpoint and as run.json."""

    def __init__(
        self,
        model_config: ModernBertConfig,
        tokenizer: str,
        save_folder: str | None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        record = {"model_config": model_config.to_dict(), "tokenizer": tokenizer, "recipe": recipe}
        self.record: dict[str, Any] = json.loads(json.dumps(record, default=str))  # plain types
        self.folder = save_folder

    def fit_start(self, state: State, logger: Logger) -> None:
        if self.folder and dist.get_global_rank() == 0:
            path = Path(self.folder) / RUN_RECORD_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.record, indent=2) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return self.record

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The record describes the current run; an older one in a checkpoint is not restored."""


def _record_file(checkpoint: Path) -> Path | None:
    """run.json in the checkpoint's folder or the one above (sharded ``ep*-ba*/`` folders)."""
    start = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for folder in (start, start.parent):
        if (folder / RUN_RECORD_FILE).is_file():
            return folder / RUN_RECORD_FILE
    return None


def model_from_checkpoint(path: str | Path) -> tuple[ModernBertForMaskedLM, dict[str, Any]]:
    """Rebuild the trained model of any phase's checkpoint; also return its run record."""
    contents = read_checkpoint(path)
    record = contents.callbacks.get(RUN_RECORD_KEY)
    if record is None:
        found = _record_file(contents.path)
        if found is None:
            raise FileNotFoundError(
                f"{contents.path}: no run record inside the checkpoint and no {RUN_RECORD_FILE} "
                "next to it; the model config is unknown"
            )
        record = json.loads(found.read_text())
    config = ModernBertConfig.from_dict(record["model_config"])
    model = ModernBertForMaskedLM(config)
    model.load_state_dict(contents.model, strict=True)
    return model.eval(), record


def export_checkpoint(
    checkpoint: str | Path, output: str | Path, tokenizer: str | None = None
) -> Path:
    """Write a transformers folder (config, safetensors, tokenizer) for a Composer checkpoint.

    ``tokenizer`` defaults to the one the run trained with (from the run record).
    """
    from modernbert.data.tokenizer import load_tokenizer
    from modernbert.hf import save_hf_folder

    model, record = model_from_checkpoint(checkpoint)
    tok = load_tokenizer(tokenizer or record["tokenizer"])
    return save_hf_folder(model, tok, output)
