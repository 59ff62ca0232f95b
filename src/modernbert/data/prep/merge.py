"""Merge the parts of a partitioned conversion into OUT/{train,val}, as one machine writes them.

Nothing is merged unless every part is complete. Per split, the lengths files are concatenated
in part order first and the shard indexes merged (streaming's ``merge_index``) in the same
order, so sample i of the merged index has length i of the merged doc_lengths.npy; the merged
index.json is what makes a split readable, so it is written after its lengths; the summed
summary.json comes last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from modernbert.data.mds_format import DOC_LENGTHS_FILE
from modernbert.data.prep.lengths import concat_lengths
from modernbert.data.prep.parts import (
    PLAN_FILE,
    SUMMARY_FILE,
    part_folder,
    part_summary,
    staging_folder,
)
from modernbert.data.prep.storage import OutputRoot
from modernbert.data.prep.summary import SPLITS, Summary

INDEX_FILE = "index.json"


def merge_parts(output: str | Path) -> Summary:
    """Check that every part of OUTPUT completed, then write the merged splits and summary."""
    root = OutputRoot.parse(output)
    plan = root.read_json(PLAN_FILE)
    if plan is None:
        raise FileNotFoundError(
            f"no {root.url_of(PLAN_FILE)}: {root.url} is not the output of a partitioned "
            "conversion (convert_to_mds.py --num-parts N --part I)"
        )
    n = int(plan["num_parts"])
    found = [root.read_json(part_summary(i)) for i in range(n)]
    missing = [i for i, s in enumerate(found) if s is None]
    if missing:
        raise ValueError(
            f"{len(missing)} of {n} parts are not complete (no parts/I/{SUMMARY_FILE}): "
            f"{', '.join(map(str, missing))}; rerun them (completed parts are skipped)"
        )
    total = Summary(config={k: v for k, v in plan["config"].items() if k not in ("part", "plan")})
    for i, data in enumerate(found):
        assert data is not None
        if data["config"].get("plan") != plan["fingerprint"]:
            raise ValueError(f"part {i} was converted with other settings than {PLAN_FILE}")
        total.add(Summary.from_dict(data))
    with staging_folder() as stage, _quiet_streaming():
        for split in SPLITS:
            _merge_split(root, split, n, stage / split)
    root.write_json(SUMMARY_FILE, total.to_dict())
    return total


def _merge_split(root: OutputRoot, split: str, n: int, stage: Path) -> None:
    from streaming.base.util import merge_index

    stage.mkdir(parents=True)
    lengths = []
    for i in range(n):
        rel = f"{split}/{part_folder(i)}"
        index = root.read_json(f"{rel}/{INDEX_FILE}")
        if index is None:
            raise FileNotFoundError(f"part {i} is complete but {root.url_of(rel)} has no index")
        if root.local is not None:
            path = root.local / rel / DOC_LENGTHS_FILE
        else:
            path = stage / f"{i}.npy"
            if not root.fetch(f"{rel}/{DOC_LENGTHS_FILE}", path):
                raise FileNotFoundError(f"no {root.url_of(f'{rel}/{DOC_LENGTHS_FILE}')}")
        samples = sum(int(shard["samples"]) for shard in index["shards"])
        count = len(_lengths_view(path))
        if count != samples:
            raise ValueError(
                f"{root.url_of(rel)}: {DOC_LENGTHS_FILE} lists {count} documents, index {samples}"
            )
        lengths.append(path)
    urls = [root.url_of(f"{split}/{part_folder(i)}/{INDEX_FILE}") for i in range(n)]
    if root.local is not None:
        final = root.local / split / DOC_LENGTHS_FILE
        merged = final.with_name(f"{DOC_LENGTHS_FILE}.tmp-{os.getpid()}")
        concat_lengths(lengths, merged)
        os.replace(merged, final)
        # merge_index names shards by their partition folder, wherever it writes the index;
        # it refuses to replace an index, so write it aside and swap it in atomically.
        merge_index(urls, str(stage / "index"), keep_local=True)
        index_tmp = root.local / split / f"{INDEX_FILE}.tmp-{os.getpid()}"
        shutil.copyfile(stage / "index" / INDEX_FILE, index_tmp)
        os.replace(index_tmp, root.local / split / INDEX_FILE)
    else:
        merged = stage / DOC_LENGTHS_FILE
        concat_lengths(lengths, merged)
        root.put(merged, f"{split}/{DOC_LENGTHS_FILE}")
        merge_index(urls, (str(stage / "index"), root.url_of(split)), keep_local=False)


@contextlib.contextmanager
def _quiet_streaming() -> Iterator[None]:
    """merge_index warns about every temp folder and non-empty output: expected here."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _lengths_view(path: Path):
    import numpy as np

    return np.load(path, mmap_mode="r")
