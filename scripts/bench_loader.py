"""Throughput of the MLM loader (packing + masking) on synthetic MDS shards.

    .venv/bin/python scripts/bench_loader.py --docs 20000 --seq 1024 --batch 32 --workers 0 2

Prints, per worker count: batches/s, real tokens/s, padded tokens/s, packing efficiency, and
the time to replay the packing plan up to the middle of the epoch (what a resume costs).
``--validate-hash on off`` times each setting with and without the shard digest check
(alternating, in one process), which is how the loader's default was chosen.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from modernbert.data import (
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
    num_tokens_in_batch,
)
from modernbert.data.synthetic import lognormal_lengths, random_documents, write_mds_documents
from modernbert.data.tokenizer import TokenSpec

VOCAB = 50368
TOKENS = TokenSpec(
    cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=VOCAB
)


def make_data(folder: Path, docs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = lognormal_lengths(docs, rng)  # median 300 tokens, ~10% longer than 1024
    write_mds_documents(
        folder / "train", random_documents(lengths, rng, low=5, high=VOCAB), size_limit=1 << 26
    )


def bench(
    folder: Path, seq: int, batch: int, workers: int, max_batches: int, validate_hash: bool
) -> None:
    cfg = MLMLoaderConfig(
        streams={"synthetic": StreamConfig(local=str(folder))},
        max_seq_len=seq,
        num_workers=workers,
        validate_hash=validate_hash,
    )
    start = time.perf_counter()
    loader = build_mlm_dataloader(cfg, TOKENS, batch, seed=0, world_size=1, rank=0)
    n_batches = len(loader)  # plans the whole epoch
    setup = time.perf_counter() - start
    n = real = 0
    start = time.perf_counter()
    first = None
    for b in loader:
        first = time.perf_counter() - start if first is None else first
        n += 1
        real += num_tokens_in_batch(b)
        if n == max_batches:
            break
    elapsed = time.perf_counter() - start
    padded = n * batch * seq

    state = loader.dataset.state_dict(batch * (n_batches // 2), True)
    resumed = build_mlm_dataloader(cfg, TOKENS, batch, seed=0, world_size=1, rank=0)
    start = time.perf_counter()
    resumed.dataset.load_state_dict(state)
    next(iter(resumed))
    resume = time.perf_counter() - start
    print(
        f"workers={workers} hash check {'on ' if validate_hash else 'off'}: first batch "
        f"{first:.3f}s, {n} batches of {batch}x{seq} in {elapsed:.2f}s -> "
        f"{n / elapsed:.1f} batches/s, {real / elapsed / 1e3:.0f}k real tokens/s "
        f"({padded / elapsed / 1e3:.0f}k incl. padding), packing efficiency "
        f"{real / padded:.4f}; build+plan {setup:.2f}s, resume at batch {n_batches // 2} "
        f"(load + first batch) {resume:.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--max-batches", type=int, default=200, help="batches timed per run")
    parser.add_argument("--data", type=Path, help="reuse/create synthetic shards here")
    parser.add_argument(
        "--validate-hash",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="shard digest check settings to time, in this order (e.g. on off on off)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        if not (folder / "train" / "index.json").exists():
            start = time.perf_counter()
            make_data(folder, args.docs, seed=0)
            print(f"wrote {args.docs} documents in {time.perf_counter() - start:.1f}s to {folder}")
        for workers in args.workers:
            for mode in args.validate_hash:
                bench(folder, args.seq, args.batch, workers, args.max_batches, mode == "on")


if __name__ == "__main__":
    main()
