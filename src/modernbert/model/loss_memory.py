"""Peak memory of the MLM head + loss, chunked vs plain, for the benchmark.

    python scripts/bench.py loss-memory                  # 10k masked x 50k vocab, CPU
    python scripts/bench.py loss-memory --device cuda    # bf16 on the GPU

One forward + backward of the head and tied decoder over `num_tokens` masked hidden
states: `plain` computes every logit then the cross-entropy in fp32, `chunked` is
model/loss.py. On CUDA the figure is `max_memory_allocated` above
what the inputs and weights hold; on CPU it is the peak RSS of a fresh subprocess above its
RSS once the inputs are built (a clean high-water mark, not shared with the caller).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from ..special_tokens import MLM_ROLES, trained_ids
from .config import ModernBertConfig
from .loss import chunked_cross_entropy
from .modeling import ModernBertForMaskedLM

MODES = ("plain", "chunked")


def _head_model(vocab_size: int, hidden_size: int) -> ModernBertForMaskedLM:
    config = ModernBertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=1,
        **{r.config_field: trained_ids()[r.name] for r in MLM_ROLES},
    )
    return ModernBertForMaskedLM(config)


def _step(model: ModernBertForMaskedLM, hidden: torch.Tensor, targets: torch.Tensor, mode: str):
    if mode == "chunked":
        loss = chunked_cross_entropy(model.head_loss_sum, hidden, targets, model.loss_chunk_rows)
    else:
        loss = model._loss(model._logits(hidden), targets)
    loss.backward()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure_here(
    mode: str, num_tokens: int, vocab_size: int, hidden_size: int, device: str, dtype: str
) -> int:
    dev = torch.device(device)
    model = _head_model(vocab_size, hidden_size).to(dev, getattr(torch, dtype))
    gen = torch.Generator(device=dev).manual_seed(0)
    hidden = torch.randn(
        num_tokens, hidden_size, device=dev, dtype=model.decoder.weight.dtype, generator=gen
    )
    hidden.requires_grad_(True)
    targets = torch.randint(0, vocab_size, (num_tokens,), device=dev, generator=gen)
    # A small step first: lazy imports and allocator set-up (checkpointing imports
    # torch._dynamo, ~200 MB of RSS) are not the loss's memory.
    _step(model, hidden[:8].detach().requires_grad_(True), targets[:8], mode)
    model.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        _step(model, hidden, targets, mode)
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - base
    base = _rss_bytes()
    _step(model, hidden, targets, mode)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def loss_peak_bytes(
    mode: str,
    num_tokens: int = 10_000,
    vocab_size: int = 50_368,
    hidden_size: int = 768,
    device: str = "cpu",
    dtype: str | None = None,
) -> int:
    """Peak bytes of one head + loss forward/backward above its inputs ('plain' or
    'chunked'); dtype defaults to bfloat16 on CUDA, float32 on CPU."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    args = (mode, num_tokens, vocab_size, hidden_size, device, dtype)
    if device.startswith("cuda"):
        return _measure_here(*args)
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "modernbert.model.loss_memory", "--inner", *map(str, args)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`bench.py loss-memory`'s options (the benchmark entry: modernbert.bench.cli)."""
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--vocab", type=int, default=50_368)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)


def run(args: argparse.Namespace) -> int:
    """Print both modes' peaks as one JSON line."""
    result = {
        mode: loss_peak_bytes(mode, args.tokens, args.vocab, args.hidden, args.device, args.dtype)
        for mode in MODES
    }
    print(
        json.dumps(
            {"tokens": args.tokens, "vocab": args.vocab, "device": args.device}
            | {f"{mode}_peak_mib": round(b / 2**20, 1) for mode, b in result.items()}
        )
    )
    return 0


if __name__ == "__main__":  # the child process of `loss_peak_bytes` on the CPU
    if len(sys.argv) != 8 or sys.argv[1] != "--inner":
        sys.exit("error: this is loss_peak_bytes' child; run `python scripts/bench.py loss-memory`")
    mode, tokens, vocab, hidden, device, dtype = sys.argv[2:]
    print(_measure_here(mode, int(tokens), int(vocab), int(hidden), device, dtype))
