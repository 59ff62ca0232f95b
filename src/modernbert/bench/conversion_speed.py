"""`bench.py convert`: data-prep conversion throughput, ours vs plain `tokenizers` batch
encoding of the same texts, and the converter's peak memory by input size.

    python scripts/bench.py convert [--max-mb 20] [--tokenizer DIR] [--workers 1 2]
    nice python scripts/bench.py convert --rss-gb 0.05 0.25 1.05 --repeat 1

Contract: builds the local corpus (`--max-mb` of this machine's packages) and trains a
tokenizer on it unless `--tokenizer` names one; prints docs/s, tokens/s, MB/s of text, wall
and CPU seconds (all threads and worker processes, so the figure holds when other jobs share
the machine) of each variant, best of `--repeat`, and the converter's speed relative to plain
encoding. `--rss-gb` then writes a JSONL file of each size (the local corpus repeated),
converts it with data_prep/convert_to_mds.py in a child process and prints the child's peak
RSS: flat memory means the same peak for every size. Inputs and outputs are temporary.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from .cli import child_env


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children: robust to other load on the box."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


CONVERT_SCRIPT = Path(__file__).resolve().parents[3] / "data_prep" / "convert_to_mds.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-mb", type=float, default=20.0, help="size of the local corpus")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: train one)")
    parser.add_argument("--vocab-size", type=int, default=16384)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--repeat", type=int, default=3, help="keep the fastest of N runs")
    parser.add_argument("--rss-gb", type=float, nargs="*", default=[], help="input sizes (GB)")


def run(args: argparse.Namespace) -> int:
    from tokenizers import Tokenizer

    from modernbert.data.prep.inputs import DocumentList, iter_texts
    from modernbert.data.prep.local_corpus import LocalCorpus, build_local_corpus
    from modernbert.data.prep.to_mds import convert
    from modernbert.data.tokenizer import load_tokenizer, train_tokenizer

    max_bytes = int(args.max_mb * 1e6)

    work = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    start = time.perf_counter()
    docs = build_local_corpus(max_bytes=max_bytes)
    build_s = time.perf_counter() - start
    texts = [d.text for d in docs]
    mbytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"local corpus: {len(docs):,} docs, {mbytes:.1f} MB, built in {build_s:.1f}s")

    if args.tokenizer is None:
        start = time.perf_counter()
        tok_sample = iter_texts([LocalCorpus(max_bytes=min(max_bytes, 8_000_000))])
        train_tokenizer(tok_sample, args.vocab_size, work / "tok")
        print(f"trained a {args.vocab_size} tokenizer in {time.perf_counter() - start:.1f}s")
    tok_dir = args.tokenizer or str(work / "tok")
    hf_tok = load_tokenizer(tok_dir)
    backend = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())

    def best(run) -> tuple[int, int, float, float]:
        """(docs, tokens, seconds, cpu seconds) of the fastest of --repeat runs (shared box)."""
        results = []
        for _ in range(args.repeat):
            start, cpu = time.perf_counter(), cpu_seconds()
            n_docs, tokens = run()
            results.append((n_docs, tokens, time.perf_counter() - start, cpu_seconds() - cpu))
        return min(results, key=lambda r: r[2])

    def plain(name: str):
        def run() -> tuple[int, int]:
            encodings = getattr(backend, name)(texts, add_special_tokens=False)
            return len(encodings), sum(len(e.ids) for e in encodings)

        return run

    def ours(source_factory, workers: int):
        def run() -> tuple[int, int]:
            out = Path(tempfile.mkdtemp(dir=work)) / "mds"
            summary = convert([source_factory()], hf_tok, out, workers=workers)
            return summary.documents, summary.tokens

        return run

    rows = [(f"tokenizers {n}", *best(plain(n))) for n in ("encode_batch", "encode_batch_fast")]
    for workers in args.workers:
        rows.append(
            (f"convert workers={workers}", *best(ours(lambda: DocumentList(docs), workers)))
        )
    e2e = ours(lambda: LocalCorpus(max_bytes=max_bytes), 1)
    rows.append(("convert --source local workers=1", *best(e2e)))

    title = f"variant (best of {args.repeat})"
    print(f"\n{title:<36}{'docs/s':>8}{'tokens/s':>11}{'MB/s':>7}{'wall s':>8}{'CPU s':>7}")
    for name, n_docs, tokens, seconds, cpu in rows:
        print(
            f"{name:<36}{n_docs / seconds:>8,.0f}{tokens / seconds:>11,.0f}"
            f"{mbytes / seconds:>7.2f}{seconds:>8.2f}{cpu:>7.2f}"
        )
    speed = {name: tokens / seconds for name, _, tokens, seconds, _ in rows}
    for name in list(speed)[2:]:
        ratios = [
            speed[name] / speed[f"tokenizers {b}"] for b in ("encode_batch", "encode_batch_fast")
        ]
        print(f"{name}: {ratios[0]:.2f}x encode_batch, {ratios[1]:.2f}x encode_batch_fast")
    for gb in args.rss_gb:
        peak_rss(docs, tok_dir, work, int(gb * 1e9))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def write_jsonl(docs, path: Path, nbytes: int) -> int:
    """The documents again and again as JSONL until `nbytes` of text; returns the text bytes."""
    import json

    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < nbytes:
            for doc in docs:
                f.write(json.dumps({"text": doc.text}) + "\n")
                written += len(doc.text.encode("utf-8"))
                if written >= nbytes:
                    break
    return written


def peak_rss(docs, tok_dir: str, work: Path, nbytes: int) -> None:
    """Convert a generated JSONL of `nbytes` in a child process; print its peak RSS."""
    import json
    import subprocess
    import sys

    folder = Path(tempfile.mkdtemp(dir=work))
    try:
        data = folder / "input.jsonl"
        text_bytes = write_jsonl(docs, data, nbytes)
        cmd = [sys.executable, str(CONVERT_SCRIPT), "--input", str(data), "--tokenizer", tok_dir,
               "--output", str(folder / "mds"), "--no-progress", "--workers", "1"]  # fmt: skip
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=child_env())
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
        summary = json.loads((folder / "mds" / "summary.json").read_text())
        shards = sum(p.stat().st_size for p in (folder / "mds").rglob("shard.*"))
        print(
            f"input {data.stat().st_size / 1e9:.2f} GB JSONL ({text_bytes / 1e9:.2f} GB text, "
            f"{summary['documents']:,} docs, {summary['tokens']:,} tokens): converted in "
            f"{seconds:.0f}s ({summary['tokens'] / seconds:,.0f} tokens/s, "
            f"{summary['config']['input_ids_dtype']} ids, {shards / 1e9:.2f} GB shards), "
            f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB",
            flush=True,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
