"""What the loader's packing plan costs at corpus scale (`bench.py loader --scale N ...`).

For each size N: a synthetic `doc_lengths.npy` of N web-like lengths (median 400 tokens,
4 bytes a document) in a temporary folder, deleted afterwards; shards are not needed to plan.
Then: the epoch's row index built once (what a first run saves while it trains; here on
`index_workers` processes), and, in a fresh child process (`resume_probe`), a resume at the
last batch of the epoch with the index, an estimate of the replay without it, and that
process's peak memory. One line of figures per size.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from modernbert.data.epoch_order import PermutedRange
from modernbert.data.packing import EpochPacking, GatheredLengths
from modernbert.data.row_index import RowIndex
from modernbert.data.streams import map_lengths
from modernbert.data.synthetic import lognormal_lengths

from .cli import child_command, child_env

WINDOW = 8192  # the loader's default packing_window
SEED = (17, 0)  # (shuffle_seed, epoch)


def write_lengths(path: Path, n: int, chunk: int = 1 << 24) -> float:
    """A synthetic doc_lengths.npy of n web-like lengths; returns their mean.

    One chunk of 16M lengths is drawn and written again and again: the same distribution at
    a fraction of the drawing time, and the loader reads the file in a shuffled order anyway.
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
    """Print the figures of one size (see the module docstring)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-loader-scale-"))
    try:
        path = folder / "doc_lengths.npy"
        start = time.perf_counter()
        mean = write_lengths(path, n)
        made = time.perf_counter() - start
        build = build_index(path, seq, index_workers) if n <= max_index else float("nan")
        cmd = child_command("loader", "--probe", str(path), "--seq", str(seq),
                            "--batch", str(batch), "--replay-windows", str(replay))  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=child_env())
        probe = json.loads(done.stdout.splitlines()[-1])
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
