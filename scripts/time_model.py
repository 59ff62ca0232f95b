#!/usr/bin/env python3
"""Forward+backward throughput and peak memory of the model, per attention backend.

    PYTHONPATH=src python scripts/time_model.py                 # base dims, seq 1024, packed
    PYTHONPATH=src python scripts/time_model.py --vs-hf         # also transformers' ModernBERT
    PYTHONPATH=src python scripts/time_model.py --layers 4 --rows 2 --device cpu

Batches are synthetic MLM documents ([CLS] body [SEP], 30% of the body labelled) with
log-normal lengths ("variable", packed first-fit into --rows rows of --seq tokens) or exactly
--seq tokens each ("fixed"). Ours gets packed rows with position_ids (docs/interfaces.md
section 3); transformers (--vs-hf) gets the same documents one per row, padded to the longest.
Tokens/s counts real tokens only. Peak memory is what one training step adds on top of the
model: CUDA allocator peak on GPU; on CPU the peak RSS of a fresh child process per case.

Needs torch only (transformers for --vs-hf), so it runs on a bare GPU box.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modernbert.model import (
    IGNORE_INDEX,
    ModernBertConfig,
    ModernBertForMaskedLM,
    flash_attn_available,
)

PRESETS = {
    "base": dict(
        hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12
    ),
    "large": dict(
        hidden_size=1024, intermediate_size=2624, num_hidden_layers=28, num_attention_heads=16
    ),
    "tiny": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4),
}
PAD, CLS, SEP, MASK, FIRST_BODY = 0, 1, 2, 3, 5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="base")
    p.add_argument("--layers", type=int, help="override the preset's layer count")
    p.add_argument("--hidden", type=int, help="override the preset's hidden size")
    p.add_argument("--ffn", type=int, help="override the preset's intermediate size")
    p.add_argument("--heads", type=int, help="override the preset's attention heads")
    p.add_argument("--vocab", type=int, default=50368)
    p.add_argument("--seq", type=int, default=1024, help="row length (tokens)")
    p.add_argument("--rows", type=int, default=None, help="rows per batch (default 8 GPU, 2 CPU)")
    p.add_argument("--layouts", default="variable,fixed", help="variable and/or fixed")
    p.add_argument("--median-len", type=float, default=256.0, help="variable: median doc length")
    p.add_argument("--sigma", type=float, default=1.0, help="variable: log-normal sigma")
    p.add_argument("--backends", default="available", help="comma list, or 'available'")
    p.add_argument("--vs-hf", action="store_true", help="also time transformers' ModernBERT (sdpa)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["bf16", "fp32"], help="autocast dtype (default bf16 on GPU)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (the best is reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one CPU case, JSON result
    return p.parse_args(argv)


def model_config(args) -> ModernBertConfig:
    dims = dict(PRESETS[args.preset])
    overrides = {
        "num_hidden_layers": args.layers,
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_attention_heads": args.heads,
    }
    dims.update({k: v for k, v in overrides.items() if v})
    return ModernBertConfig(
        vocab_size=args.vocab,
        pad_token_id=PAD,
        cls_token_id=CLS,
        sep_token_id=SEP,
        mask_token_id=MASK,
        **dims,
    )


def make_docs(args, layout: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, labels) per document, same documents for every model of a run."""
    gen = torch.Generator().manual_seed(args.seed)
    if layout == "fixed":
        lengths = [args.seq] * args.rows
    else:  # log-normal lengths, first-fit into rows until one does not fit (a full batch)
        free, lengths = [args.seq] * args.rows, []
        while True:
            draw = math.exp(
                math.log(args.median_len) + args.sigma * torch.randn(1, generator=gen).item()
            )
            n = int(min(max(round(draw), 8), args.seq))
            row = next((i for i, room in enumerate(free) if room >= n), None)
            if row is None:
                break
            free[row] -= n
            lengths.append(n)
    docs = []
    for n in lengths:
        ids = torch.randint(FIRST_BODY, args.vocab, (n,), generator=gen)
        ids[0], ids[-1] = CLS, SEP
        labels = torch.full((n,), IGNORE_INDEX)
        picked = 1 + torch.randperm(n - 2, generator=gen)[: round(0.3 * (n - 2))]
        labels[picked] = ids[picked]
        ids[picked] = MASK
        docs.append((ids, labels))
    return docs


def packed_batch(docs, seq: int) -> dict[str, torch.Tensor]:
    rows, free = [], []
    for doc in docs:
        row = next((i for i, room in enumerate(free) if room >= len(doc[0])), None)
        if row is None:
            rows.append([])
            free.append(seq)
            row = len(rows) - 1
        rows[row].append(doc)
        free[row] -= len(doc[0])
    batch = {
        "input_ids": torch.full((len(rows), seq), PAD),
        "attention_mask": torch.zeros(len(rows), seq, dtype=torch.long),
        "position_ids": torch.zeros(len(rows), seq, dtype=torch.long),
        "labels": torch.full((len(rows), seq), IGNORE_INDEX),
    }
    for r, row in enumerate(rows):
        start = 0
        for ids, labels in row:
            end = start + len(ids)
            batch["input_ids"][r, start:end] = ids
            batch["labels"][r, start:end] = labels
            batch["attention_mask"][r, start:end] = 1
            batch["position_ids"][r, start:end] = torch.arange(len(ids))
            start = end
    return batch


def padded_batch(docs) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in docs)
    batch = {
        "input_ids": torch.full((len(docs), width), PAD),
        "attention_mask": torch.zeros(len(docs), width, dtype=torch.long),
        "labels": torch.full((len(docs), width), IGNORE_INDEX),
    }
    for r, (ids, labels) in enumerate(docs):
        batch["input_ids"][r, : len(ids)] = ids
        batch["labels"][r, : len(ids)] = labels
        batch["attention_mask"][r, : len(ids)] = 1
    return batch


def build(args, model_name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The model (ours with a backend, or 'hf') on the device, and its batch."""
    torch.manual_seed(args.seed)
    cfg = model_config(args)
    docs = make_docs(args, args.layout)
    if model_name == "hf":
        import transformers

        from modernbert.hf import hf_config

        hf_cfg = hf_config(cfg, attn_implementation="sdpa")
        hf_cfg.reference_compile = False  # eager, like ours (its compile only runs on GPU)
        model = transformers.ModernBertForMaskedLM(hf_cfg)
        batch = padded_batch(docs)
    else:
        cfg.attn_backend = model_name
        model = ModernBertForMaskedLM(cfg)
        batch = packed_batch(docs, args.seq)
    model.to(args.device).train()
    return model, {k: v.to(args.device) for k, v in batch.items()}


def make_step(args, model, batch):
    """One training step (forward, backward), synchronised on CUDA."""
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": None}[args.dtype]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_interleaved(args, names: list[str]) -> dict[str, dict]:
    """Best step time per model, the models taking turns step by step so that a change in
    machine load (a shared CPU) hits them all alike; CUDA peak memory per model."""
    built = {name: build(args, name) for name in names}
    steps = {name: make_step(args, *built[name]) for name in names}
    times = {name: [] for name in names}
    peaks = dict.fromkeys(names, 0.0)
    cuda = args.device != "cpu"
    for round_ in range(args.warmup + args.steps):
        for name in list(steps):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            try:
                steps[name]()
            except Exception as err:  # a backend that cannot run here; the others go on
                print(f"{args.layout:9s} {name:11s} FAILED: {type(err).__name__}: {err}")
                del steps[name]
                continue
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - start)
            if cuda:
                peaks[name] = max(peaks[name], (torch.cuda.max_memory_allocated() - base) / 2**20)
    results = {}
    for name in steps:
        batch = built[name][1]
        tokens = int(batch["attention_mask"].sum())
        results[name] = {
            "shape": list(batch["input_ids"].shape),
            "tokens": tokens,
            "step_s": min(times[name]),
            "tokens_per_s": tokens / min(times[name]),
            "peak_mib": peaks[name] if cuda else None,
        }
    return results


def cpu_peak_mib(args, name: str) -> float:
    """Peak RSS one step adds above the built model, in a fresh child process."""
    child_args = [a for a in sys.argv[1:] if not a.startswith("--child")]
    cmd = [sys.executable, __file__, *child_args, "--child", json.dumps([name, args.layout])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _status_mib(field: str) -> float:
    """A memory line of /proc/self/status (per process image, unlike ru_maxrss, which a
    child inherits from the parent that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_peak(args, name: str) -> float:
    model, batch = build(args, name)
    # A step on a sliver of the batch first: lazy library set-up is not the model's memory.
    sliver = {k: v[:1, :16].contiguous() for k, v in batch.items()}
    sliver["labels"][0, 1] = sliver["input_ids"][0, 1]
    make_step(args, model, sliver)()
    base = _status_mib("VmRSS")
    try:  # reset the high-water mark to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    make_step(args, model, batch)()
    return _status_mib("VmHWM") - base


def available_backends(device: str) -> list[str]:
    if device == "cpu":
        return ["sdpa"]
    return ["sdpa", "flex"] + (["flash_attn"] if flash_attn_available() else [])


def main() -> None:
    args = parse_args()
    args.rows = args.rows or (8 if args.device != "cpu" else 2)
    args.dtype = args.dtype or ("bf16" if args.device != "cpu" else "fp32")
    if args.child:
        name, args.layout = json.loads(args.child)
        print(child_peak(args, name))
        return
    backends = (
        available_backends(args.device)
        if args.backends == "available"
        else args.backends.split(",")
    )
    names = backends + (["hf"] if args.vs_hf else [])
    device_name = (
        torch.cuda.get_device_name()
        if args.device != "cpu"
        else f"CPU x{torch.get_num_threads()} threads"
    )
    cfg = model_config(args)
    print(
        f"# {device_name}, torch {torch.__version__}, {args.dtype}, layers={cfg.num_hidden_layers} "
        f"d={cfg.hidden_size} seq={args.seq} rows={args.rows}"
    )
    for layout in args.layouts.split(","):
        args.layout = layout
        results = time_interleaved(args, names)
        for name, r in results.items():
            if r["peak_mib"] is None:
                r["peak_mib"] = cpu_peak_mib(args, name)
            print(
                f"{layout:9s} {name:11s} batch={'x'.join(map(str, r['shape'])):9s} "
                f"tokens={r['tokens']:6d} step={r['step_s']:7.3f}s "
                f"{r['tokens_per_s']:9.0f} tok/s  peak +{r['peak_mib']:8.0f} MiB",
                flush=True,
            )
        if "hf" in results:
            for name in backends:
                if name in results:
                    speed = results["hf"]["step_s"] / results[name]["step_s"]
                    mem = results[name]["peak_mib"] / max(results["hf"]["peak_mib"], 1e-9)
                    print(
                        f"{layout:9s} {name} vs hf: {speed:.2f}x faster, {mem:.2f}x the peak memory"
                    )


if __name__ == "__main__":
    main()
