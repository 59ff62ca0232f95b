"""Run the ours-vs-transformers scenarios of a preset and collect every figure in a dict.

One scenario = phase (train, inference) x length mode (fixed, variable) x sequence length.
Every side of a scenario starts from the same weights and steps through the same batches;
sides alternate repeat by repeat (the order flips each repeat) so drifts in machine speed
hit all of them alike, and tokens/s is the median over repeats after warm-up.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from ..model import resolve_backend
from ..model.loss_memory import MODES, loss_peak_bytes
from .batches import (
    TokenIds,
    fixed_docs,
    flat_batch,
    masked_tokens,
    padded_batch,
    real_tokens,
    to_device,
    variable_docs,
)
from .flops import measure_matmul_peak, step_flops
from .memory import cuda_peak, rss_peak
from .presets import BenchPreset
from .sides import (
    HF_DENSE_LOSS,
    HF_SPARSE_LOSS,
    OURS_LOSS,
    Side,
    build_ours,
    build_theirs,
    ours_with_backend,
    prepare,
    run_step,
)

Progress = Callable[[str], None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _make_batches(
    preset: BenchPreset, mode: str, seq_len: int, config, rng: np.random.Generator
) -> tuple[list[dict], list[dict], list[list[int]]]:
    """(ours, theirs, doc lengths) for each of the scenario's batches."""
    ids = TokenIds()
    ours, theirs, lengths = [], [], []
    for _ in range(preset.n_batches):
        args = (rng, preset.batch_size(seq_len), seq_len, config.vocab_size, preset.mask_prob, ids)
        if mode == "fixed":
            docs = fixed_docs(*args)
        elif mode == "variable":
            docs = variable_docs(*args, preset.lengths)
        else:
            raise ValueError(f"length mode must be 'fixed' or 'variable', got {mode!r}")
        ours.append(flat_batch(docs, seq_len))
        theirs.append(padded_batch(docs, ids.pad_id))
        lengths.append([len(d) for d in docs])
    for a, b in zip(ours, theirs):
        if real_tokens(a) != real_tokens(b) or masked_tokens(a) != masked_tokens(b):
            raise AssertionError("both layouts must hold the same real and masked tokens")
    return ours, theirs, lengths


def _time_sides(
    sides: list[Side], phase: str, preset: BenchPreset, device: torch.device, tokens: list[int]
) -> dict[str, dict]:
    """Warm up every side, then alternate timed repeats; returns per-side timings."""
    results: dict[str, dict] = {}
    alive = []
    for side in sides:
        try:
            for i in range(preset.warmup):
                run_step(side, i, phase, device, preset.autocast_dtype)
            _sync(device)
            alive.append(side)
        except Exception as error:  # OOM or a backend that cannot run here: report, go on
            results[side.name] = {"error": _error_text(error)}
            _release(side, device)
    per_repeat: dict[str, list[float]] = {s.name: [] for s in alive}
    step_times: dict[str, list[float]] = {s.name: [] for s in alive}
    for repeat in range(preset.repeats):
        order = alive if repeat % 2 == 0 else alive[::-1]
        for side in order:
            if side.name in results:  # failed in an earlier repeat
                continue
            first = repeat * preset.steps
            _sync(device)
            start = time.perf_counter()
            try:
                for i in range(first, first + preset.steps):
                    run_step(side, i, phase, device, preset.autocast_dtype)
                _sync(device)
            except Exception as error:
                results[side.name] = {"error": _error_text(error)}
                _release(side, device)
                continue
            elapsed = time.perf_counter() - start
            done = sum(tokens[i % len(tokens)] for i in range(first, first + preset.steps))
            per_repeat[side.name].append(done / elapsed)
            step_times[side.name].append(elapsed / preset.steps)
    for side in alive:
        if side.name in results:
            continue
        results[side.name] = {
            "tokens_per_s": statistics.median(per_repeat[side.name]),
            "tokens_per_s_repeats": per_repeat[side.name],
            "step_time_s": statistics.median(step_times[side.name]),
        }
    return results


def profile_step(side: Side, phase: str, device: torch.device, autocast_dtype: str | None) -> str:
    """torch.profiler table of one step of `side`: the ops that take the most time (on the
    GPU where there is one), with call counts (a proxy for kernel launches)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run_step(side, 0, phase, device, autocast_dtype)
        _sync(device)
    events = prof.key_averages()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    calls = sum(e.count for e in events)
    return f"{side.name}: {calls} op calls in one {phase} step\n" + events.table(
        sort_by=sort_by, row_limit=30
    )


def _write_profiles(
    sides: list[Side], phase: str, name: str, preset: BenchPreset, device: torch.device
) -> None:
    folder = Path(preset.profile_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for side in sides:
        try:
            text = profile_step(side, phase, device, preset.autocast_dtype)
        except Exception as error:  # a side that failed its timing fails here too
            text = f"{side.name}: not profiled: {_error_text(error)}"
        (folder / f"{name}_{side.name}.txt").write_text(text + "\n")


def _error_text(error: BaseException) -> str:
    return "out of memory" if _is_oom(error) else f"{type(error).__name__}: {error}"[:500]


def _release(side: Side, device: torch.device) -> None:
    if side.optimizer is not None:
        side.optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _memory(
    side: Side, phase: str, preset: BenchPreset, device: torch.device, config, state, kind: str
) -> dict | None:
    if preset.memory == "off":
        return None
    if preset.memory == "cuda":

        def step(i: int) -> None:
            run_step(side, i, phase, device, preset.autocast_dtype)

        return cuda_peak(side, step, preset.memory_steps, device)
    if preset.memory == "rss":
        options = {
            "warmup": preset.warmup,
            "steps": preset.memory_steps,
            "lr": preset.lr,
            "hf_sparse": kind == "theirs_sparse",
            "threads": torch.get_num_threads(),
        }
        name = "theirs" if kind.startswith("theirs") else "ours"
        model_config = side.model.config.to_dict() if name == "ours" else config.to_dict()
        return rss_peak(name, phase, model_config, state, side.batches, options)
    raise ValueError(f"memory must be 'rss', 'cuda' or 'off', got {preset.memory!r}")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def run_scenario(
    preset: BenchPreset,
    phase: str,
    mode: str,
    seq_len: int,
    device: torch.device,
    peak_flops: float | None,
    progress: Progress,
) -> dict[str, Any]:
    """Build the sides, time them, measure memory; the scenario's entry of the JSON."""
    config = preset.model_config(seq_len, preset.backends[0])
    rng = np.random.default_rng(preset.seed + seq_len)
    ours_batches, theirs_batches, lengths = _make_batches(preset, mode, seq_len, config, rng)
    tokens = [sum(x) for x in lengths]
    masked = [masked_tokens(b) for b in ours_batches]
    ours_batches = [to_device(b, device) for b in ours_batches]
    theirs_batches = [to_device(b, device) for b in theirs_batches]

    reference = build_ours(config, preset.seed, device)
    state = {k: v.detach().cpu().clone() for k, v in reference.state_dict().items()}
    sides: list[tuple[str, Side]] = []
    for backend in preset.backends:
        model = (
            reference if backend == preset.backends[0] else ours_with_backend(reference, backend)
        )
        attn = resolve_backend(backend, device).name
        kind = "ours" if backend == preset.backends[0] else f"ours_{backend}"
        sides.append((kind, Side(kind, model, ours_batches, OURS_LOSS, attn)))
    hf_variants = [("theirs", False)]
    if preset.hf_sparse_too and phase == "train":
        hf_variants.append(("theirs_sparse", True))
    for kind, sparse in hf_variants:
        model = build_theirs(reference, sparse_prediction=sparse, compile_=preset.hf_compile)
        loss = HF_SPARSE_LOSS if sparse else HF_DENSE_LOSS
        sides.append((kind, Side(kind, model, theirs_batches, loss, "sdpa")))
    for _, side in sides:
        prepare(side, phase, preset.lr)

    progress(f"{phase}/{mode}/{seq_len}: timing {', '.join(k for k, _ in sides)}")
    timings = _time_sides([s for _, s in sides], phase, preset, device, tokens)
    if preset.profile_dir is not None:
        alive = [s for kind, s in sides if "error" not in timings[kind]]
        _write_profiles(alive, phase, scenario_name(preset, phase, mode, seq_len), preset, device)
    entries: dict[str, dict] = {}
    for kind, side in sides:
        entry = {
            "attn": side.attn,
            "loss_method": side.loss_method,
            "real_tokens_per_step": statistics.mean(tokens),
            "masked_tokens_per_step": statistics.mean(masked),
            "padded_tokens_per_step": statistics.mean(b["input_ids"].numel() for b in side.batches),
            **timings[kind],
        }
        if phase == "train":
            entry["first_loss"] = side.first_loss
        if "error" not in entry:
            try:
                mem = _memory(side, phase, preset, device, config, state, kind)
            except Exception as error:
                mem = {"error": _error_text(error)}
            if mem is not None:
                entry["memory"] = mem
                entry["peak_memory_bytes"] = mem.get("peak_bytes")
            if peak_flops:
                flops = statistics.mean(
                    step_flops(config, x, m, phase) for x, m in zip(lengths, masked)
                )
                entry["model_tflops_per_s"] = flops / entry["step_time_s"] / 1e12
                entry["mfu"] = flops / entry["step_time_s"] / peak_flops
        entries[kind] = entry
        _release(side, device)
    del sides, reference
    if device.type == "cuda":
        torch.cuda.empty_cache()

    theirs = entries.pop("theirs")
    ours = entries.pop("ours")

    def ratio(a: dict, b: dict) -> dict:
        return {
            key: _ratio(a.get(key), b.get(key)) for key in ("tokens_per_s", "peak_memory_bytes")
        }

    scenario = {
        "phase": phase,
        "mode": mode,
        "seq_len": seq_len,
        "batch_rows_ours": preset.batch_size(seq_len),
        "ours": ours,
        "theirs": theirs,
        "ratio": ratio(ours, theirs),
    }
    for kind, entry in entries.items():
        scenario[kind] = {**entry, "ratio_vs_theirs": ratio(entry, theirs)}
    return scenario


def loss_memory(masked: int, vocab: int, device: torch.device) -> dict[str, Any]:
    """Peak memory of the MLM head + loss forward/backward over `masked` tokens and `vocab`
    logits (ModernBERT-base width): all fp32 logits at once ('plain', the loss before issue 9)
    vs the model's chunked loss. A failure (e.g. out of memory) is reported, not raised."""
    entry: dict[str, Any] = {"masked_tokens": masked, "vocab_size": vocab}
    for mode in MODES:
        try:
            entry[f"{mode}_peak_bytes"] = loss_peak_bytes(mode, masked, vocab, device=str(device))
        except Exception as error:
            entry[f"{mode}_error"] = _error_text(error)
    entry["ratio"] = _ratio(entry.get("plain_peak_bytes"), entry.get("chunked_peak_bytes"))
    entry["method"] = (
        "max_memory_allocated above the inputs (CUDA, bf16)"
        if device.type == "cuda"
        else "peak RSS of a fresh subprocess above its inputs (CPU, fp32)"
    )
    return entry


def scenario_name(preset: BenchPreset, phase: str, mode: str, seq_len: int) -> str:
    return f"{phase}_{mode}_{seq_len}" if preset.seq_in_name else f"{phase}_{mode}"


def run_benchmark(
    preset: BenchPreset,
    progress: Progress = print,
    on_scenario: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every scenario of `preset`, plus the machine and method, as one JSON-ready dict.

    `on_scenario` gets the partial result after each scenario, so a run cut short by a time
    limit still leaves the figures it measured.
    """
    device = torch.device(preset.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"preset {preset.name!r} needs CUDA, which is not available here")
    peak = measure_matmul_peak(device) if device.type == "cuda" else None
    result: dict[str, Any] = {
        "preset": preset.name,
        "machine": _machine(device),
        "peak_bf16_matmul_tflops": None if peak is None else peak / 1e12,
        "settings": _settings(preset),
        "scenarios": {},
    }
    if preset.loss_memory is not None:
        progress("loss memory: head + cross-entropy, plain vs chunked")
        result["loss_memory"] = loss_memory(*preset.loss_memory, device)
    for seq_len in preset.seq_lens:
        for phase in preset.phases:
            for mode in preset.modes:
                name = scenario_name(preset, phase, mode, seq_len)
                result["scenarios"][name] = run_scenario(
                    preset, phase, mode, seq_len, device, peak, progress
                )
                if on_scenario is not None:
                    on_scenario(result)
    # Other work on the machine slows both sides alike (they alternate), but says how noisy
    # the absolute figures are.
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    return result


def _machine(device: torch.device) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_start": os.getloadavg()[0],
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _settings(preset: BenchPreset) -> dict[str, Any]:
    return {
        "model": preset.model_config(max(preset.seq_lens), preset.backends[0]).to_dict(),
        "seq_lens": list(preset.seq_lens),
        "tokens_per_step": preset.tokens_per_step,
        "autocast_dtype": preset.autocast_dtype or "float32",
        "mask_prob": preset.mask_prob,
        "doc_lengths": {
            "distribution": "log-normal, clipped to [min_len, seq_len], specials included",
            "median": preset.lengths.median,
            "sigma": preset.lengths.sigma,
            "min_len": preset.lengths.min_len,
        },
        "layouts": {
            "ours": "documents packed into seq_len rows, flattened to the real tokens with "
            "cu_seqlens, host-side lengths and masked positions: the loader's flat batch "
            "(docs/interfaces.md section 3)",
            "theirs": "one document per row, right-padded to the batch's longest, attention_mask",
        },
        "optimizer": f"torch.optim.AdamW(lr={preset.lr}, weight_decay=1e-5) on both sides",
        "hf_attn_implementation": "sdpa",
        "hf_reference_compile": "transformers default" if preset.hf_compile else False,
        "warmup_steps": preset.warmup,
        "repeats": preset.repeats,
        "steps_per_repeat": preset.steps,
        "n_batches": preset.n_batches,
        "memory_method": {
            "rss": "VmHWM of a fresh subprocess per side minus its RSS after imports "
            "(HWM reset after warm-up via /proc/self/clear_refs)",
            "cuda": "max_memory_allocated during the side's steps minus allocated before, "
            "plus the side's own parameters and AdamW state",
            "off": "not measured",
        }[preset.memory],
        "mfu": "model FLOPs (encoder on real tokens, attention within documents and windows, "
        "head on masked tokens when training / all tokens at inference) / step time / "
        "measured bf16 matmul peak",
    }
