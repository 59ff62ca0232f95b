"""`bench.py loader`: throughput of the MLM loader (packing + masking) on synthetic MDS shards,
and, with `--scale`, its planning cost at corpus scale (`loader_scale.py`).

    python scripts/bench.py loader --docs 20000 --seq 1024 --batch 32 --workers 0 2
    python scripts/bench.py loader --validate-hash on off          # the shard digest's cost
    nice python scripts/bench.py loader --scale 1e7 1e8 1e9 --index-workers 2

Contract: the default form writes `--docs` synthetic documents (lognormal lengths, median
300 tokens) as MDS shards in a temporary folder (or reuses `--data`), then prints one line
per (worker count, hash setting): first-batch time, batches/s, real and padded tokens/s,
packing efficiency, and the time to resume in the middle of the epoch. Settings listed in
`--validate-hash` alternate in one process, so their figures compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB = 50368


def make_data(folder: Path, docs: int, seed: int) -> None:
    """`docs` random documents as MDS shards in `folder/train`."""
    from modernbert.data.synthetic import lognormal_lengths, random_documents, write_mds_documents
    from modernbert.special_tokens import ROLES

    rng = np.random.default_rng(seed)
    lengths = lognormal_lengths(docs, rng)  # median 300 tokens, ~10% longer than 1024
    body = random_documents(lengths, rng, low=len(ROLES), high=VOCAB)  # no special ids
    write_mds_documents(folder / "train", body, size_limit=1 << 26)


def bench(
    folder: Path, seq: int, batch: int, workers: int, max_batches: int, validate_hash: bool
) -> None:
    """Time one loader setting on the shards in `folder`; print its line."""
    from modernbert.data import (
        MLMLoaderConfig,
        StreamConfig,
        build_mlm_dataloader,
        num_tokens_in_batch,
    )
    from modernbert.data.tokenizer import TokenSpec

    tokens = TokenSpec.of_trained_layout(VOCAB)
    cfg = MLMLoaderConfig(
        streams={"synthetic": StreamConfig(local=str(folder))},
        max_seq_len=seq,
        num_workers=workers,
        validate_hash=validate_hash,
    )
    start = time.perf_counter()
    loader = build_mlm_dataloader(cfg, tokens, batch, seed=0, world_size=1, rank=0)
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
    resumed = build_mlm_dataloader(cfg, tokens, batch, seed=0, world_size=1, rank=0)
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
        f"(load + first batch) {resume:.2f}s",
        flush=True,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=float, nargs="+", help="documents per lengths file")
    parser.add_argument("--index-workers", type=int, default=2)
    parser.add_argument(
        "--max-index-docs",
        type=float,
        default=float("inf"),
        help="above this size, time the resume without building the index first (it takes "
        "~planning time x documents; the figure is then extrapolated)",
    )
    parser.add_argument("--replay-windows", type=int, default=100, help="timed without index")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: one resume
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


def run(args: argparse.Namespace) -> int:
    if args.probe or args.scale:
        from .loader_scale import resume_probe, scale_benchmark

        if args.probe:
            resume_probe(args.probe, args.seq, args.batch, args.replay_windows)
        for n in args.scale or ():
            scale_benchmark(
                int(n), args.seq, args.batch, args.index_workers, args.replay_windows,
                args.max_index_docs,
            )  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        if not (folder / "train" / "index.json").exists():
            start = time.perf_counter()
            make_data(folder, args.docs, seed=0)
            print(f"wrote {args.docs} documents in {time.perf_counter() - start:.1f}s to {folder}")
        for workers in args.workers:
            for mode in args.validate_hash:
                bench(folder, args.seq, args.batch, workers, args.max_batches, mode == "on")
    return 0
