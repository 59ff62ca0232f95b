"""Merge the parts of a partitioned conversion into OUT/{train,val} and OUT/summary.json.

python data_prep/convert_to_mds.py ... --output OUT --num-parts 8 --part I   # I = 0..7, anywhere
python data_prep/merge_mds.py OUT                                           # once, after all
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    from modernbert.data.prep.merge import merge_parts

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="the --output of the parts (folder, s3://, gs://, ...)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = merge_parts(args.output)
    print(summary.format())
    print(
        f"merged {summary.config.get('num_parts')} parts into {args.output}: "
        f"{summary.documents:,} documents, {summary.tokens:,} tokens "
        f"in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
