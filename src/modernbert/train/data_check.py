"""The data must be the run's: same tokenizer, and no token id the model cannot embed.

Checked when the run is built, before any weight is trained or any file written, from what
data prep recorded in summary.json (the tokenizer fingerprint and the largest token id of
each split). Shards without those records (older conversions, foreign MDS data) are scanned
once for their largest id; their tokenizer cannot be checked, which is said out loud.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modernbert.data.fingerprint import FINGERPRINT_KEY, tokenizer_fingerprint
from modernbert.train.typed_yaml import RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from modernbert.data.config import MLMLoaderConfig
    from modernbert.train.config import TrainConfig

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class StreamRecord:
    """What summary.json says about one stream's split (None: not recorded)."""

    name: str
    where: str  # the summary file, or the folder when there is none
    fingerprint: str | None
    tokenizer: str | None  # the tokenizer data prep was given, for the message
    max_token_id: int | None


def stream_record(name: str, local: str, split: str | None) -> StreamRecord:
    """Find the stream's summary.json: OUTPUT/summary.json with split folders, or the file
    one level up when `local` is a split folder itself."""
    folder = Path(local)
    candidates = [(folder / SUMMARY_FILE, split)]
    if not split:
        candidates.append((folder.parent / SUMMARY_FILE, folder.name))
    for path, split_name in candidates:
        if path.is_file():
            summary = json.loads(path.read_text())
            config = summary.get("config", {})
            split_info = summary.get("splits", {}).get(split_name or "", {})
            max_id = split_info.get("max_token_id")
            return StreamRecord(
                name,
                str(path),
                config.get(FINGERPRINT_KEY),
                config.get("tokenizer"),
                None if max_id is None or max_id < 0 else int(max_id),
            )
    return StreamRecord(name, str(folder), None, None, None)


def loader_records(loader: MLMLoaderConfig) -> list[StreamRecord]:
    return [
        stream_record(
            name, stream.local, stream.split if stream.split is not None else loader.split
        )
        for name, stream in loader.streams.items()
    ]


def check_fingerprints(
    records: list[StreamRecord], tokenizer: PreTrainedTokenizerBase, tokenizer_name: str
) -> None:
    """Refuse data tokenized with another tokenizer; warn where it was not recorded."""
    ours = tokenizer_fingerprint(tokenizer)
    wrong = [r for r in records if r.fingerprint is not None and r.fingerprint != ours]
    if wrong:
        raise RecipeError(
            [
                f"stream {r.name!r}: {r.where} was tokenized with {r.tokenizer or 'a tokenizer'} "
                f"({r.fingerprint}), but this run's tokenizer {tokenizer_name} is {ours}; "
                f"re-run data_prep/convert_to_mds.py --tokenizer {tokenizer_name}"
                for r in wrong
            ]
        )
    for r in records:
        if r.fingerprint is None:
            warnings.warn(
                f"stream {r.name!r}: no tokenizer fingerprint in {r.where}; cannot check that "
                "the data was tokenized with this run's tokenizer",
                stacklevel=2,
            )


def scan_max_token_id(loader: MLMLoaderConfig) -> int:
    """Largest token id of every document the loader can read (one pass over the data)."""
    from modernbert.data.streams import DocumentSource

    source = DocumentSource(loader)
    return max((int(source.read(i).max()) for i in range(source.num_documents)), default=-1)


def check_token_ids(loader: MLMLoaderConfig, key: str, vocab_size: int) -> None:
    """Refuse a loader whose data holds an id >= vocab_size, naming the id and the stream."""
    records = loader_records(loader)
    known = [r for r in records if r.max_token_id is not None]
    bad = [r for r in known if r.max_token_id >= vocab_size]
    if bad:
        raise RecipeError(
            [
                f"{key}.streams.{r.name}: token id {r.max_token_id} (from {r.where}) is outside "
                f"the model's vocabulary (vocab_size {vocab_size})"
                for r in bad
            ]
        )
    if len(known) < len(records):
        unknown = ", ".join(r.name for r in records if r.max_token_id is None)
        print(
            f"{key}: no max_token_id recorded for {unknown}; scanning the shards once", flush=True
        )
        largest = scan_max_token_id(loader)
        if largest >= vocab_size:
            raise RecipeError(
                f"{key}: token id {largest} in the data is outside the model's vocabulary "
                f"(vocab_size {vocab_size})"
            )


def check_run_data(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Every loader's data fits the run's tokenizer and model (see the module docstring)."""
    loaders: dict[str, Any] = {"train_loader": cfg.train_loader, "eval_loader": cfg.eval_loader}
    for key, loader in loaders.items():
        if loader is None:
            continue
        check_fingerprints(loader_records(loader), tokenizer, str(cfg.tokenizer))
        check_token_ids(loader, key, cfg.model.vocab_size)
