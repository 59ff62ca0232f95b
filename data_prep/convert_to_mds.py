"""Tokenize text and code into MDS shards (train/val), with doc_lengths.npy and summary.json.

python data_prep/convert_to_mds.py --input corpus/ --tokenizer tok/ --output data/
python data_prep/convert_to_mds.py --source local --tokenizer tok/ --output data/ --workers 2
python data_prep/convert_to_mds.py --input corpus/ --tokenizer tok/ --output s3://b/data \
    --num-parts 64 --part 7     # or --part from SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX
python data_prep/merge_mds.py s3://b/data                  # once every part is done
"""

from __future__ import annotations

import argparse
import time

from modernbert.data.prep.cli_args import add_input_args, max_bytes, sources_from_args


def main(argv: list[str] | None = None) -> None:
    # The converter (streaming, torch) is imported inside main: spawned workers re-import this
    # file, and they need none of it.
    from modernbert.data.prep import to_mds as conv

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_args(parser)
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder or hub name")
    parser.add_argument(
        "--output", required=True, help="output folder or s3:// gs:// oci:// file:// URL"
    )
    parser.add_argument("--val-fraction", type=float, default=conv.DEFAULT_VAL_FRACTION)
    parser.add_argument(
        "--workers", type=int, default=conv.DEFAULT_WORKERS, help="1: Rust threads; N: processes"
    )
    parser.add_argument("--compression", default=conv.DEFAULT_COMPRESSION, help="or 'none'")
    parser.add_argument("--shard-bytes", type=int, default=conv.DEFAULT_SHARD_BYTES)
    parser.add_argument("--seed", type=int, default=conv.DEFAULT_SEED, help="of the val split")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--ids-dtype",
        choices=conv.ID_DTYPES,
        default=None,
        help="storage of token ids (default: uint16 when the vocabulary fits, else uint32)",
    )
    parser.add_argument(
        "--num-parts", type=int, default=1, help="split the work into N parts (merge_mds.py)"
    )
    parser.add_argument(
        "--part",
        type=int,
        default=None,
        help="this part, 0..N-1 (default: $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX)",
    )
    parser.add_argument(
        "--split-bytes",
        type=int,
        default=conv.DEFAULT_SPLIT_BYTES,
        help="JSONL/Parquet files larger than this are cut into ranges of about this size",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    summary = conv.convert(
        sources_from_args(args),
        args.tokenizer,
        args.output,
        val_fraction=args.val_fraction,
        text_field=args.text_field,
        workers=args.workers,
        compression=args.compression,
        shard_bytes=args.shard_bytes,
        max_docs=args.max_docs,
        max_bytes=max_bytes(args),
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        num_parts=args.num_parts,
        part=args.part,
        split_bytes=args.split_bytes,
        input_ids_dtype=args.ids_dtype,
    )
    seconds = time.perf_counter() - start
    print(summary.format())
    print(
        f"wrote {args.output}: {summary.documents:,} documents, {summary.tokens:,} tokens in "
        f"{seconds:.1f}s ({summary.tokens / seconds:,.0f} tokens/s)"
    )


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
