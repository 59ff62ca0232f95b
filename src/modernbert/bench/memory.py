"""Peak memory of one side, measured honestly on each device.

CUDA: `max_memory_allocated` during the side's steps, above what was allocated before
them, plus the side's own parameters and AdamW state (both sides live in one process, so the
other side's weights must not be counted).

CPU: tracemalloc does not see torch's allocations and both sides share one process, so each
side runs in a fresh subprocess (`python -m modernbert.bench.memory SPEC`). The child imports
the same libraries for both sides (torch, transformers, modernbert), builds its one model,
runs warm-up steps (AdamW state allocated), resets the kernel's RSS high-water mark
(`/proc/self/clear_refs`), runs the measured steps and reports `VmHWM - RSS after imports`:
weights, optimizer state, activations, gradients and allocator slack, without the Python and
library baseline common to both.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .sides import Side, build_theirs, prepare, run_step, state_bytes


def cuda_peak(side: Side, step: Callable[[int], None], steps: int, device: torch.device) -> dict:
    """Peak bytes of `steps` calls of `step` on CUDA, attributed to `side` alone."""
    torch.cuda.synchronize(device)
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps):
        step(i)
    torch.cuda.synchronize(device)
    transient = torch.cuda.max_memory_allocated(device) - before
    own = state_bytes(side)
    return {"peak_bytes": own + transient, "step_bytes": transient, "state_bytes": own}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_peak(
    side_name: str,
    phase: str,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    batches: list[dict[str, torch.Tensor]],
    options: dict[str, Any],
) -> dict:
    """Peak RSS of one side in a fresh subprocess (see the module docstring).

    `side_name` is 'ours' or 'theirs'; `options` holds warmup, steps, lr, hf_sparse.
    """
    if side_name not in ("ours", "theirs"):
        raise ValueError(f"side_name must be 'ours' or 'theirs', got {side_name!r}")
    spec = {
        "side": side_name,
        "phase": phase,
        "config": config,
        "state": state,
        "batches": batches,
        "options": options,
    }
    src_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        path = Path(tmp) / "spec.pt"
        torch.save(spec, path)
        proc = subprocess.run(
            [sys.executable, "-m", "modernbert.bench.memory", str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {side_name}/{phase} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _probe(spec_path: str) -> dict:
    """The child's side of `rss_peak`."""
    import transformers  # noqa: F401  (both sides pay the same import baseline)

    from ..model import ModernBertConfig, ModernBertForMaskedLM

    gc.collect()
    base_kib = _status_kib("VmRSS")
    spec = torch.load(spec_path, weights_only=True)
    opts = spec["options"]
    torch.set_num_threads(opts.get("threads", torch.get_num_threads()))
    model = ModernBertForMaskedLM(ModernBertConfig.from_dict(spec["config"]))
    model.load_state_dict(spec.pop("state"))
    if spec["side"] == "theirs":
        model = build_theirs(model, sparse_prediction=opts["hf_sparse"], compile_=False)
    side = Side(spec["side"], model, spec.pop("batches"), loss_method="", attn="")
    prepare(side, spec["phase"], opts["lr"])
    device = torch.device("cpu")
    for i in range(max(1, opts["warmup"])):
        run_step(side, i, spec["phase"], device, None)
    gc.collect()
    before_kib = _status_kib("VmRSS")
    reset = _reset_hwm()
    for i in range(opts["steps"]):
        run_step(side, i, spec["phase"], device, None)
    hwm_kib = _status_kib("VmHWM")
    return {
        "peak_bytes": (hwm_kib - base_kib) * 1024,
        "step_bytes": (hwm_kib - before_kib) * 1024,
        "state_bytes": state_bytes(side),
        "rss_after_imports_bytes": base_kib * 1024,
        "hwm_bytes": hwm_kib * 1024,
        "hwm_reset": reset,
    }


if __name__ == "__main__":
    print(json.dumps(_probe(sys.argv[1])))
