"""Train the byte-level BPE tokenizer for text and code.

python data_prep/train_tokenizer.py --input corpus/ --vocab-size 32768 --output tok/
python data_prep/train_tokenizer.py --source local --vocab-size 8192 --output tok/
python data_prep/train_tokenizer.py --input corpus/ --max-bytes 2e9 --vocab-size 50368 --output tok/

With --max-bytes (and no --max-docs) the text is a seeded sample drawn across all inputs, not
their first files; memory does not grow with the corpus.
"""

from __future__ import annotations

import argparse
import time

from modernbert.data.prep.cli_args import add_input_args, max_bytes, sources_from_args
from modernbert.data.prep.inputs import iter_texts
from modernbert.data.prep.sampling import DEFAULT_SAMPLE_SEED, sample_texts
from modernbert.data.tokenizer import DEFAULT_MIN_FREQUENCY, TokenSpec, train_tokenizer
from modernbert.safe_output import check_output_folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_args(parser)
    parser.add_argument("--vocab-size", type=int, required=True, help="before padding to 64")
    parser.add_argument("--output", required=True, help="folder to save the tokenizer in")
    parser.add_argument("--min-frequency", type=int, default=DEFAULT_MIN_FREQUENCY)
    parser.add_argument(
        "--max-files", dest="max_docs", type=int, help="same as --max-docs (a file or a record)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer")
    parser.add_argument(
        "--sample-seed", type=int, default=DEFAULT_SAMPLE_SEED, help="of the --max-bytes sample"
    )
    args = parser.parse_args(argv)

    check_output_folder(args.output, "tokenizer", args.overwrite, args.input)
    sources = sources_from_args(args)
    start = time.perf_counter()
    cap = max_bytes(args)
    if cap is not None and args.max_docs is None:
        texts = sample_texts(sources, cap, seed=args.sample_seed)
    else:
        texts = iter_texts(sources, args.max_docs, cap)
    tok = train_tokenizer(
        texts,
        vocab_size=args.vocab_size,
        output_dir=args.output,
        min_frequency=args.min_frequency,
        show_progress=True,
    )
    spec = TokenSpec.from_tokenizer(tok)
    print(
        f"saved {args.output}: {spec.vocab_size} tokens (cls={spec.cls_id} sep={spec.sep_id} "
        f"mask={spec.mask_id} pad={spec.pad_id}) in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
