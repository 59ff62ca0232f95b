"""Throughput of the MLM loader (packing + masking) on synthetic MDS shards, and its cost at
corpus scale.

    .venv/bin/python scripts/bench_loader.py --docs 20000 --seq 1024 --batch 32 --workers 0 2
    nice .venv/bin/python scripts/bench_loader.py --scale 1e7 1e8 1e9 --index-workers 2

The first form prints, per worker count: batches/s, real tokens/s, padded tokens/s, packing
efficiency, and the time to resume in the middle of the epoch. `--scale` writes a synthetic
doc_lengths.npy of each size in /tmp (4 bytes a document; deleted afterwards) and measures
what the loader's plan costs there (shards are not needed to plan): building the epoch's row
index once (the work a first run does while it trains; here on --index-workers processes),
then, in a fresh process, a resume at the last batch of the epoch with and without the index,
and that process's peak memory.
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
from modernbert.data.epoch_order import PermutedRange
from modernbert.data.packing import EpochPacking, GatheredLengths
from modernbert.data.row_index import RowIndex
from modernbert.data.streams import map_lengths
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


WINDOW = 8192  # the loader's default packing_window
SEED = (17, 0)  # (shuffle_seed, epoch)


def write_lengths(path: Path, n: int, chunk: int = 1 << 24) -> float:
    """A synthetic doc_lengths.npy of n web-like lengths; returns their mean.

    One chunk of 16M lengths is drawn and written again and again (drawing a billion on a
    busy 2-core box took 17 minutes): the same distribution, and the loader reads the file
    in a shuffled order anyway.
    """
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint32, shape=(n,))
    block = lognormal_lengths(min(chunk, n), np.random.default_rng(0), median=400, sigma=1.0)
    total = 0
    for lo in range(0, n, chunk):
        part = block[: min(chunk, n - lo)]
        out[lo : lo + len(part)] = part
        total += int(part.sum())
    out.flush()
    del out
    return total / n


def _plan_parts(path: Path, seq: int) -> tuple[EpochPacking, RowIndex]:
    lengths = map_lengths(str(path))  # as the loader maps them
    order = PermutedRange(len(lengths), SEED)
    index = RowIndex({"bench": str(path), "n": len(lengths), "seq": seq}, path.parent)
    return EpochPacking(GatheredLengths(lengths, order), seq, WINDOW, SEED), index


def _count_rows(args: tuple[Path, int, int, int]) -> list[int]:
    path, seq, lo, hi = args
    plan, _ = _plan_parts(path, seq)
    return [plan._plan(w).num_rows for w in range(lo, hi)]


def build_index(path: Path, seq: int, workers: int) -> float:
    """Row counts of every window (what a first run saves as it plans), on `workers`
    processes; returns the seconds it took."""
    from concurrent.futures import ProcessPoolExecutor

    plan, index = _plan_parts(path, seq)
    step = 64
    jobs = [(path, seq, lo, min(lo + step, plan.num_windows))
            for lo in range(0, plan.num_windows, step)]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        counts = [c for part in pool.map(_count_rows, jobs) for c in part]
    index.save(np.cumsum(counts))
    return time.perf_counter() - start


def resume_probe(path: Path, seq: int, batch: int, replay_windows: int) -> None:
    """In a fresh process: resume at the last batch of the epoch, print JSON figures."""
    import json
    import resource

    def status() -> dict[str, str]:
        lines = Path("/proc/self/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines)

    anon_before = int(status()["RssAnon"].split()[0]) / 1024
    start = time.perf_counter()
    plan, index = _plan_parts(path, seq)
    if index.path.is_file():
        indexed = EpochPacking(plan.lengths, seq, WINDOW, SEED, index)
        total = indexed.total_rows()
        rows = indexed.rows(total - batch, total)  # the last batch: plans its window only
        assert len(rows) == batch
    else:  # no index built (too slow here): time what a resume does past loading it
        total = -1
        plan._plan(plan.num_windows - 1)
    resume_s = time.perf_counter() - start
    after = status()  # the resumed loader's memory (the replay timing below is extra)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    for w in range(min(replay_windows, plan.num_windows)):
        plan._plan(w)
    per_window = (time.perf_counter() - start) / min(replay_windows, plan.num_windows)
    print(json.dumps({
        "resume_s": resume_s,
        "replay_s_estimate": per_window * plan.num_windows,
        "per_window_s": per_window,
        "windows": plan.num_windows,
        "rows": total,
        "peak_rss_mib": peak,
        "rss_anon_mib": int(after["RssAnon"].split()[0]) / 1024,
        "anon_growth_mib": int(after["RssAnon"].split()[0]) / 1024 - anon_before,
        "rss_file_mib": int(after["RssFile"].split()[0]) / 1024,
    }))  # fmt: skip


def scale_benchmark(
    n: int, seq: int, batch: int, index_workers: int, replay: int, max_index: float
) -> None:
    import json
    import shutil
    import subprocess
    import sys

    folder = Path(tempfile.mkdtemp(prefix="bench_loader_scale-"))
    try:
        path = folder / "doc_lengths.npy"
        start = time.perf_counter()
        mean = write_lengths(path, n)
        made = time.perf_counter() - start
        build = build_index(path, seq, index_workers) if n <= max_index else float("nan")
        cmd = [sys.executable, __file__, "--probe", str(path), "--seq", str(seq),
               "--batch", str(batch), "--replay-windows", str(replay)]  # fmt: skip
        probe = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                          check=True).stdout.splitlines()[-1])  # fmt: skip
        built = (
            f"index of {probe['windows']:,} windows built in {build:.0f}s on {index_workers} "
            f"processes ({build / n * 1e6 * index_workers:.2f} core-us/doc)"
            if build == build
            else f"index of {probe['windows']:,} windows NOT built (see --max-index-docs)"
        )
        print(
            f"{n:>13,} docs (mean {mean:.0f} tokens, {path.stat().st_size / 2**30:.2f} GiB "
            f"lengths, written in {made:.0f}s): {built}; resume at the last batch "
            f"{probe['resume_s']:.2f}s with the index"
            f"{'' if build == build else ' (open, order, plan the last window; no index load)'}, "
            f"~{probe['replay_s_estimate']:.0f}s replay without it "
            f"({probe['per_window_s'] * 1e3:.1f} ms/window); peak RSS "
            f"{probe['peak_rss_mib']:.0f} MiB (anon {probe['rss_anon_mib']:.0f} of which "
            f"{probe['anon_growth_mib']:+.0f} after imports, file-backed "
            f"{probe['rss_file_mib']:.0f})",
            flush=True,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()
    if args.probe:
        resume_probe(args.probe, args.seq, args.batch, args.replay_windows)
        return
    if args.scale:
        for n in args.scale:
            scale_benchmark(
                int(n), args.seq, args.batch, args.index_workers, args.replay_windows,
                args.max_index_docs,
            )  # fmt: skip
        return
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
