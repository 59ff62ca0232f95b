"""Input options shared by the data_prep command lines (tokenizer training and conversion)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from modernbert.data.prep.inputs import Source, make_sources
from modernbert.data.prep.local_corpus import DEFAULT_MAX_BYTES, DEFAULT_PACKAGES, LocalCorpus
from modernbert.data.prep.readers import ReadOptions


def add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        default=[],
        metavar="PATH",
        help="files, directories (walked recursively), or hf:owner/name[:config][@split]",
    )
    parser.add_argument(
        "--source",
        choices=sorted(SOURCE_CHOICES),
        default="inputs",
        help="'local': the built-in corpus from this machine's Python packages (plus --input)",
    )
    parser.add_argument("--text-field", default=ReadOptions.text_field, help="JSONL/Parquet field")
    parser.add_argument(
        "--extensions", nargs="+", default=None, help="only read these file extensions (.py .md)"
    )
    parser.add_argument(
        "--local-packages",
        nargs="+",
        default=list(DEFAULT_PACKAGES),
        help="packages of the local corpus ('stdlib' = the standard library)",
    )
    parser.add_argument("--max-docs", type=int, default=None, help="stop after N documents")
    parser.add_argument(
        "--max-bytes",
        type=float,
        default=None,
        help=f"stop after N bytes of text (local corpus default: {DEFAULT_MAX_BYTES:.0f})",
    )


def _local(args: argparse.Namespace) -> list[Source]:
    cap = int(args.max_bytes) if args.max_bytes is not None else DEFAULT_MAX_BYTES
    return [LocalCorpus(packages=args.local_packages, max_docs=args.max_docs, max_bytes=cap)]


# --source name -> extra sources it adds to --input.
SOURCE_CHOICES: dict[str, Callable[[argparse.Namespace], list[Source]]] = {
    "inputs": lambda args: [],
    "local": _local,
}


def sources_from_args(args: argparse.Namespace) -> list[Source]:
    """--input specs plus the --source extras; at least one of them is needed."""
    extra = SOURCE_CHOICES[args.source](args)
    if not args.input and not extra:
        raise SystemExit("error: give --input PATH [PATH ...] or --source local")
    options = ReadOptions(text_field=args.text_field)
    found = make_sources(args.input, options, args.extensions) if args.input else []
    return found + extra


def max_bytes(args: argparse.Namespace) -> int | None:
    return None if args.max_bytes is None else int(args.max_bytes)
