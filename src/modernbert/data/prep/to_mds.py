"""Raw text and code -> tokenized MDS shards (layout: docs/interfaces.md, section 1).

Deterministic by construction: sources are read in a fixed order, results come back from
the workers in input order, and the train/val split is a hash of each document's stable key
(with a seed), so the same input gives byte-identical shards with any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modernbert.data.fingerprint import FINGERPRINT_KEY, tokenizer_fingerprint
from modernbert.data.mds_format import mds_columns
from modernbert.data.prep.documents import Document, Item, SourceError
from modernbert.data.prep.encode import BatchEncoder
from modernbert.data.prep.inputs import Source, capped_documents, iter_items, make_sources
from modernbert.data.prep.lengths import LengthsWriter
from modernbert.data.prep.partition import DEFAULT_SPLIT_BYTES, Partition, iter_part
from modernbert.data.prep.parts import SplitTarget, convert_part, local_targets, remote_output
from modernbert.data.prep.readers import ReadOptions
from modernbert.data.prep.staging import OUTPUT_KIND, staged_output
from modernbert.data.prep.storage import OutputRoot
from modernbert.data.prep.summary import Summary
from modernbert.safe_output import check_not_over_inputs, check_output_folder

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

# Token ids are stored in the narrowest unsigned type that holds every id of the vocabulary:
# ModernBERT's 50,368 tokens fit uint16, which halves the shard bytes.
ID_DTYPES = ("uint16", "uint32")
DEFAULT_VAL_FRACTION = 0.01
DEFAULT_COMPRESSION = "zstd"
DEFAULT_SHARD_BYTES = 1 << 26
DEFAULT_SEED = 0
# 1 = one tokenizer thread that itself uses every core (Rust); N > 1 = N spawned processes,
# for many-core machines. On a 2-core box 1 was as fast and used less CPU (docs/scale.md).
DEFAULT_WORKERS = 1
# A batch of work for one worker: large enough to amortise the hand-off, small enough to
# keep every core busy and memory flat.
BATCH_DOCS = 1024
BATCH_CHARS = 4 << 20


def ids_dtype(vocab_size: int, wanted: str | None = None) -> str:
    """`wanted`, or the narrowest of ID_DTYPES that holds every id (0 .. vocab_size - 1)."""
    if wanted is not None and wanted not in ID_DTYPES:
        raise ValueError(f"input_ids dtype must be one of {', '.join(ID_DTYPES)}, got {wanted!r}")
    for name in ID_DTYPES if wanted is None else (wanted,):
        if vocab_size - 1 <= np.iinfo(name).max:
            return name
    raise ValueError(f"token ids of a {vocab_size}-token vocabulary do not fit {name}")


def split_of(key: str, val_fraction: float, seed: int = DEFAULT_SEED) -> str:
    """'val' for a stable pseudo-random `val_fraction` of keys, else 'train'."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") < val_fraction * 2**64 else "train"


def convert(
    inputs: Sequence[str | Path | Source],
    tokenizer: str | Path | PreTrainedTokenizerFast,
    output: str | Path,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    text_field: str = "text",
    extensions: Iterable[str] | None = None,
    workers: int = DEFAULT_WORKERS,
    compression: str | None = DEFAULT_COMPRESSION,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    progress: bool = False,
    num_parts: int = 1,
    part: int | None = None,
    split_bytes: int = DEFAULT_SPLIT_BYTES,
    input_ids_dtype: str | None = None,
) -> Summary:
    """Tokenize every document of `inputs` into OUTPUT/{train,val} MDS datasets.

    Inputs are paths, `hf:` dataset specs, `local:` (the built-in corpus) or Source objects.
    `output` is a folder or a remote URL (s3://, gs://, oci://, file://). With `num_parts`
    > 1 only part `part` (default: from SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX) is
    converted, into OUTPUT/{train,val}/part-I and OUTPUT/parts/I (see parts.py); a part that
    already completed is skipped (converted again with `overwrite`). Token ids are stored as
    `input_ids_dtype` (default: uint16 when the vocabulary fits, else uint32). Raises
    FileNotFoundError / ValueError (SourceError) naming the bad input; on any error the
    partial output is removed.
    """
    from streaming.base.compression import is_compression

    from modernbert.data.tokenizer import check_special_tokens, load_tokenizer

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if compression in ("", "none"):
        compression = None
    if compression is not None and not is_compression(compression):
        raise ValueError(f"unknown compression {compression!r} (e.g. zstd, gz, none)")
    for name, cap in (("max_docs", max_docs), ("max_bytes", max_bytes)):
        if cap is not None and cap < 1:
            raise ValueError(f"{name} must be >= 1, got {cap}")
    partition = Partition.resolve(num_parts, part)
    if num_parts > 1 and (max_docs is not None or max_bytes is not None):
        raise ValueError("max_docs/max_bytes cap a one-machine run; they do not combine with parts")
    root = OutputRoot.parse(output)
    # refuse an output that is, holds or lies in an input (or the tokenizer) before any work
    if root.local is not None:
        if num_parts == 1:
            check_output_folder(root.local, OUTPUT_KIND, overwrite, [*inputs, tokenizer])
        else:  # parts share a root other parts may have written; parts.py guards each part
            check_not_over_inputs(root.local, [*inputs, tokenizer])
    sources = make_sources(inputs, ReadOptions(text_field=text_field), extensions)
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer
    if not hasattr(tok, "backend_tokenizer"):
        raise ValueError(f"tokenizer {type(tok).__name__} is not a fast (Rust) tokenizer")
    check_special_tokens(tok)
    summary = Summary(
        config={
            "inputs": [str(s) if isinstance(s, str | Path) else s.name for s in inputs],
            "tokenizer": str(tokenizer) if isinstance(tokenizer, str | Path) else tok.name_or_path,
            FINGERPRINT_KEY: tokenizer_fingerprint(tok),
            "vocab_size": len(tok),
            "input_ids_dtype": ids_dtype(len(tok), input_ids_dtype),
            "val_fraction": val_fraction,
            "seed": seed,
            "text_field": text_field,
            "compression": compression,
            "max_docs": max_docs,
            "max_bytes": max_bytes,
        }
    )
    tokenizer_json = tok.backend_tokenizer.to_str()
    write = partial(
        _write_splits,
        tokenizer_json=tokenizer_json,
        summary=summary,
        workers=workers,
        compression=compression,
        shard_bytes=shard_bytes,
        val_fraction=val_fraction,
        seed=seed,
        progress=progress,
    )
    if num_parts > 1:
        summary.config.update(num_parts=num_parts, split_bytes=split_bytes)
        items = iter_part(sources, partition, split_bytes)
        return convert_part(
            root, partition, summary, lambda targets: write(items, targets), tokenizer_json,
            overwrite,
        )  # fmt: skip
    items = capped_documents(iter_items(sources), max_docs, max_bytes)
    if root.is_remote:
        with remote_output(root, summary, overwrite) as targets:
            write(items, targets)
            _check_documents(summary, val_fraction)
        return summary
    with staged_output(output, overwrite) as tmp:
        write(items, local_targets(tmp))
        _check_documents(summary, val_fraction)
        (tmp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _check_documents(summary: Summary, val_fraction: float) -> None:
    if summary.documents == 0:
        skipped = dict(summary.skipped) or "nothing"
        raise SourceError(f"no documents in the inputs (skipped: {skipped})")
    if val_fraction > 0 and summary.splits["val"].documents == 0:
        log.warning("val split is empty: too few documents for val_fraction=%s", val_fraction)


def _batches(items: Iterable[Item], summary: Summary) -> Iterator[tuple[list[str], list[Document]]]:
    texts: list[str] = []
    docs: list[Document] = []
    chars = 0
    for item in items:
        if not isinstance(item, Document):
            summary.add_skipped(item.source, item.reason)
            continue
        texts.append(item.text)
        docs.append(item)
        chars += len(item.text)
        if len(docs) >= BATCH_DOCS or chars >= BATCH_CHARS:
            yield texts, docs
            texts, docs, chars = [], [], 0
    if docs:
        yield texts, docs


def _write_splits(
    items: Iterable[Item],
    targets: dict[str, SplitTarget],
    *,
    tokenizer_json: str,
    summary: Summary,
    workers: int,
    compression: str | None,
    shard_bytes: int,
    val_fraction: float,
    seed: int,
    progress: bool,
) -> None:
    from streaming import MDSWriter
    from tqdm import tqdm

    from modernbert.data.shard_hash import SHARD_HASH

    columns = mds_columns(summary.config["input_ids_dtype"])
    dtype = np.dtype(summary.config["input_ids_dtype"])
    writers = {
        s: MDSWriter(
            out=t.mds_out,
            columns=columns,
            compression=compression,
            size_limit=shard_bytes,
            hashes=[SHARD_HASH],
        )
        for s, t in targets.items()
    }
    lengths = {s: LengthsWriter(t.lengths) for s, t in targets.items()}
    try:
        with (
            BatchEncoder(tokenizer_json, workers) as encoder,
            tqdm(unit="doc", desc="tokenizing", disable=not progress, mininterval=1.0) as bar,
        ):
            for (flat, doc_lengths), docs in encoder.map(_batches(items, summary)):
                ends = np.cumsum(doc_lengths)
                flat = flat.astype(dtype, copy=False)
                for doc, ids in zip(docs, np.split(flat, ends[:-1]), strict=True):
                    if ids.size == 0:
                        summary.add_skipped(doc.source, "no_tokens")
                        continue
                    split = split_of(doc.key, val_fraction, seed)
                    writers[split].write(
                        {"input_ids": ids, "source": doc.source, "language": doc.language}
                    )
                    lengths[split].append(ids.size)
                    summary.add_document(
                        doc.source,
                        doc.language,
                        split,
                        ids.size,
                        len(doc.text.encode("utf-8")),
                        int(ids.max()),
                    )
                bar.update(len(docs))
                bar.set_postfix(tokens=f"{summary.tokens:,}", refresh=False)
    except BaseException:
        for split, writer in writers.items():
            writer.cancel_future_jobs()
            lengths[split].discard()
        raise
    for split, writer in writers.items():
        writer.finish()
        targets[split].publish_lengths(lengths[split].finish())
