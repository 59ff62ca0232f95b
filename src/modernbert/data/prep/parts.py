"""Where the splits of a conversion go, and how a part of a partitioned one is published.

Layout of a partitioned conversion (N parts):

    OUT/parts/plan.json              settings every part must share (written by each part)
    OUT/train/part-I/, OUT/val/part-I/   MDS shards + doc_lengths.npy of part I
    OUT/parts/I/summary.json         written last: part I is complete

The shards of part I sit inside the split folders because that is the layout streaming's
``merge_index`` merges (a shard's path is its partition folder / its name), so merging writes
only OUT/{train,val}/index.json and doc_lengths.npy and moves no shard, locally or remotely.
A part counts as complete only when its summary exists, and the summary is written after
every shard and lengths file; a killed part leaves no summary and is converted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modernbert.data.mds_format import DOC_LENGTHS_FILE
from modernbert.data.prep.partition import Partition
from modernbert.data.prep.staging import staged_output
from modernbert.data.prep.storage import OutputRoot
from modernbert.data.prep.summary import SPLITS, Summary

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
PLAN_FILE = f"{PARTS_DIR}/plan.json"
SUMMARY_FILE = "summary.json"


def part_folder(part: int) -> str:
    """Name of part I's folder inside each split (a merge_index partition)."""
    return f"part-{part}"


def part_summary(part: int) -> str:
    return f"{PARTS_DIR}/{part}/{SUMMARY_FILE}"


@dataclass(frozen=True)
class SplitTarget:
    """Where one split is written: MDS shards (local folder, or local staging + remote URL)
    and its doc_lengths.npy (built locally, then moved or uploaded beside the shards)."""

    local: Path
    lengths: Path
    remote: str | None = None

    @property
    def mds_out(self) -> str | tuple[str, str]:
        return str(self.local) if self.remote is None else (str(self.local), self.remote)

    def publish_lengths(self, built: Path) -> None:
        if self.remote is not None:
            OutputRoot(self.remote, remote=self.remote).put(built, DOC_LENGTHS_FILE)


def local_targets(folder: Path) -> dict[str, SplitTarget]:
    return {s: SplitTarget(folder / s, folder / s / DOC_LENGTHS_FILE) for s in SPLITS}


def remote_targets(stage: Path, root: OutputRoot, prefix: str = "") -> dict[str, SplitTarget]:
    """Shards staged under `stage` and uploaded to ROOT/split[/prefix] as they are finished."""
    targets = {}
    for s in SPLITS:
        (stage / f"lengths-{s}").mkdir(parents=True)
        remote = root.url_of(f"{s}/{prefix}" if prefix else s).rstrip("/")
        targets[s] = SplitTarget(stage / s, stage / f"lengths-{s}" / DOC_LENGTHS_FILE, remote)
    return targets


@contextlib.contextmanager
def staging_folder() -> Iterator[Path]:
    """A local temp folder for files on their way to a remote root; removed afterwards."""
    stage = Path(tempfile.mkdtemp(prefix="modernbert-convert-"))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def remote_output(
    root: OutputRoot, summary: Summary, overwrite: bool
) -> Iterator[dict[str, SplitTarget]]:
    """A one-machine conversion to a remote root; summary.json is uploaded last."""
    if root.read_json(SUMMARY_FILE) is not None and not overwrite:
        raise FileExistsError(f"output {root.url} already exists; pass --overwrite to replace it")
    with staging_folder() as stage:
        yield remote_targets(stage, root)
        root.write_json(SUMMARY_FILE, summary.to_dict())


def plan_fingerprint(config: dict, tokenizer_json: str) -> str:
    """What every part of one conversion must agree on: the settings (not the part index, nor
    the tokenizer's path, which may differ between machines) and the tokenizer's content."""
    settings = {k: v for k, v in config.items() if k not in ("part", "tokenizer", "plan")}
    text = json.dumps(settings, sort_keys=True) + tokenizer_json
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_plan(root: OutputRoot, summary: Summary, num_parts: int) -> None:
    """Record the plan on first use; refuse parts whose settings differ from it."""
    if root.read_json(PLAN_FILE) is None and root.read_json(SUMMARY_FILE) is not None:
        raise FileExistsError(
            f"output {root.url} holds a one-machine conversion; partitioned parts need their own"
        )
    plan = {"num_parts": num_parts, "fingerprint": summary.config["plan"]}
    found = root.read_json(PLAN_FILE)
    if found is None:
        config = {k: v for k, v in summary.config.items() if k != "part"}
        root.write_json(PLAN_FILE, {**plan, "config": config})
    elif {k: found.get(k) for k in plan} != plan:
        raise ValueError(
            f"{root.url_of(PLAN_FILE)} was written by parts with other settings "
            f"(num_parts={found.get('num_parts')}, fingerprint {found.get('fingerprint')}; these "
            f"are num_parts={num_parts}, fingerprint {plan['fingerprint']}): use another output"
        )


def convert_part(
    root: OutputRoot,
    partition: Partition,
    summary: Summary,
    write: Callable[[dict[str, SplitTarget]], None],
    tokenizer_json: str,
    overwrite: bool = False,
) -> Summary:
    """Convert one part unless it already completed (then its saved summary is returned,
    unless `overwrite`)."""
    i = partition.part
    summary.config["plan"] = plan_fingerprint(summary.config, tokenizer_json)
    summary.config["part"] = i
    _check_plan(root, summary, partition.num_parts)
    done = root.read_json(part_summary(i))
    if done is not None and not overwrite:
        log.info("part %d of %s is complete: skipped", i, root.url)
        return Summary.from_dict(done)
    if root.local is None:
        with staging_folder() as stage:
            write(remote_targets(stage, root, part_folder(i)))
            root.write_json(part_summary(i), summary.to_dict())  # last: the part is complete
        return summary
    with staged_output(root.local / PARTS_DIR / str(i), overwrite=True) as tmp:
        write(local_targets(tmp))
        for split in SPLITS:
            dest = root.local / split / part_folder(i)
            if dest.exists():  # left by a run killed while publishing: never merged, replace
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            (tmp / split).rename(dest)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary
