"""Benchmark presets: model size, batch shapes and measurement budget, by name.

Every default of the benchmark lives here, in `BenchPreset`; the command line only picks a
preset and overrides a few fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..model import ModernBertConfig
from ..special_tokens import MLM_ROLES
from .batches import LengthDistribution, TokenIds


@dataclass(frozen=True)
class BenchPreset:
    """What to measure and how long; see docs/benchmarks.md for the method."""

    name: str
    model: dict[str, Any]
    """ModernBertConfig fields that differ from its defaults (ModernBERT-base)."""
    seq_lens: tuple[int, ...]
    tokens_per_step: int
    """Packed-row tokens per step: our batch is tokens_per_step // seq_len rows."""
    device: str = "cpu"
    autocast_dtype: str | None = None
    """'bfloat16' to run both sides under torch.autocast, None for full fp32."""
    backends: tuple[str, ...] = ("sdpa",)
    """Our attention backends; the first is `ours`, the others are reported beside it."""
    hf_sparse_too: bool = False
    """Also time transformers with sparse_prediction=True (explains where a gain comes from)."""
    hf_compile: bool = False
    """transformers' `reference_compile` (torch.compile of its MLP/head on CUDA); off by
    default so both sides run eager PyTorch."""
    phases: tuple[str, ...] = ("train", "inference")
    modes: tuple[str, ...] = ("fixed", "variable")
    lengths: LengthDistribution = field(
        default_factory=lambda: LengthDistribution(median=200.0, sigma=1.0)
    )
    mask_prob: float = 0.3
    n_batches: int = 3
    """Distinct batches per scenario, cycled through by every timed step."""
    warmup: int = 1
    repeats: int = 3
    steps: int = 2
    """Steps per timed repeat; tokens/s is the median over repeats."""
    memory: str = "rss"
    """'rss': peak RSS of a fresh subprocess per side (CPU); 'cuda': max_memory_allocated;
    'off': not measured."""
    memory_steps: int = 2
    lr: float = 1e-4
    seed: int = 0
    seq_in_name: bool = False
    """Put the sequence length in scenario names (presets with several lengths)."""
    profile_dir: str | None = None
    """Write a torch.profiler table of one step per side and scenario here (None: off)."""
    loss_memory: tuple[int, int] | None = (10_000, 50_368)
    """(masked tokens, vocab) of the head + loss peak-memory figure, plain vs chunked loss
    (None: not measured). 10k x 50k is a ModernBERT-base microbatch of 32 x 1024 at 30%."""

    def model_config(self, seq_len: int, backend: str) -> ModernBertConfig:
        """Our config at `seq_len`; special ids are those of the synthetic batches."""
        ids = TokenIds()
        values = {
            "max_position_embeddings": max(seq_len, 512),
            **{r.config_field: getattr(ids, r.spec_field) for r in MLM_ROLES},
            **self.model,
        }
        return ModernBertConfig(**values, attn_backend=backend)

    def batch_size(self, seq_len: int) -> int:
        return max(1, self.tokens_per_step // seq_len)

    def replace(self, **changes: Any) -> BenchPreset:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown BenchPreset field(s) {unknown}; valid: {sorted(known)}")
        return dataclasses.replace(self, **changes)


# A few hundred tokens median with a long tail, as in web text and code files.
_WEB_LENGTHS = LengthDistribution(median=200.0, sigma=1.0)

PRESETS: dict[str, BenchPreset] = {
    # Seconds: CI checks the machinery, not the speed.
    "tiny": BenchPreset(
        name="tiny",
        model=dict(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            local_attention=16,
            global_attn_every_n_layers=2,
        ),
        seq_lens=(64,),
        tokens_per_step=256,
        lengths=LengthDistribution(median=20.0, sigma=0.8),
        n_batches=2,
        warmup=1,
        repeats=2,
        steps=1,
        memory="off",
        loss_memory=(256, 512),
    ),
    # A few minutes on a 2-core CPU. Vocab 8192 keeps the MLM head's share of the FLOPs
    # (~30% dense) close to ModernBERT-base's, so the head does not drown the encoder.
    "cpu": BenchPreset(
        name="cpu",
        model=dict(
            vocab_size=8192,
            hidden_size=384,
            intermediate_size=576,
            num_hidden_layers=6,
            num_attention_heads=6,
            local_attention=128,
            global_attn_every_n_layers=3,
        ),
        seq_lens=(512,),
        tokens_per_step=2048,
        lengths=_WEB_LENGTHS,
        hf_sparse_too=True,
        repeats=5,
        steps=1,
        memory_steps=1,
    ),
    # ModernBERT-base, bf16 autocast; flash-attn when installed, else sdpa, plus flex.
    "gpu-base": BenchPreset(
        name="gpu-base",
        model={},
        seq_lens=(512, 1024, 8192),
        tokens_per_step=16384,
        device="cuda",
        autocast_dtype="bfloat16",
        backends=("auto", "flex"),
        hf_sparse_too=True,
        lengths=_WEB_LENGTHS,
        n_batches=3,
        warmup=2,
        repeats=3,
        steps=3,
        memory="cuda",
        seq_in_name=True,
    ),
}


def get_preset(name: str) -> BenchPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]
