"""The golden loss curve: the first training losses of a tiny recipe, checked in the CPU suite.

Any change to the model, the loader, the masking, the optimizer or the schedule that moves the
curve shows up as a failing `tests/test_golden_losses.py`. The run depends on nothing of the
machine: its corpus is drawn from a seeded generator (documents made of repeated "phrases", so
there is something to learn), its tokenizer is trained on a fixed text, the model is 2 layers
of width 64, fp32, one thread.

When a change is meant to move the curve, regenerate the file and commit it with the change:

    python scripts/bench.py quality golden --update
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..special_tokens import MLM_ROLES

GOLDEN_FILE = Path(__file__).resolve().parents[3] / "tests" / "golden" / "tiny_losses.json"
GOLDEN_STEPS = 16
GOLDEN_RTOL = 1e-4  # losses agree to this relative tolerance (float32 sums, one thread)
_SEED = 1234
_DOCS = 240
_PHRASES = 64  # distinct token phrases documents are made of
_TOKENIZER_TEXT = [
    "def main(argv):\n    return parse(argv)\n",
    "The loader packs documents into rows and masks thirty percent of the tokens.\n",
    "for i in range(10):\n    total += i * i\n",
]


def synthetic_corpus(folder: Path, real_ids: np.ndarray) -> Path:
    """Train/val MDS datasets of documents built from a fixed set of random phrases."""
    from ..data.synthetic import write_mds_documents

    rng = np.random.default_rng(_SEED)
    phrases = [rng.choice(real_ids, size=rng.integers(3, 9)) for _ in range(_PHRASES)]
    docs = []
    for _ in range(_DOCS):
        picks = rng.integers(0, _PHRASES, size=rng.integers(4, 40))
        docs.append(np.concatenate([phrases[p] for p in picks]).astype(np.uint32))
    write_mds_documents(folder / "train", docs[: _DOCS - 20])
    write_mds_documents(folder / "val", docs[_DOCS - 20 :])
    return folder


def golden_recipe(workdir: Path) -> Path:
    """Write the tokenizer, the corpus and the recipe of the golden run into `workdir`."""
    from ..data.tokenizer import TokenSpec, train_tokenizer

    workdir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(_TOKENIZER_TEXT, vocab_size=300, output_dir=workdir / "tokenizer")
    spec = TokenSpec.from_tokenizer(tok)
    specials = [*spec.special_ids, *spec.role_ids()]
    synthetic_corpus(workdir / "mds", np.setdiff1d(np.arange(spec.vocab_size), specials))
    recipe = _recipe(workdir, spec)
    path = workdir / "golden.yaml"
    path.write_text(json.dumps(recipe, indent=2))
    return path


def _recipe(workdir: Path, spec: Any) -> dict[str, Any]:
    return {
        "run_name": "golden",
        "seed": 17,
        "tokenizer": str(workdir / "tokenizer"),
        "model": {
            "vocab_size": -(-spec.vocab_size // 64) * 64,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            "local_attention": 16,
            **{r.config_field: getattr(spec, r.spec_field) for r in MLM_ROLES},
            "attn_backend": "sdpa",
        },
        "train_loader": {
            "streams": {"synthetic": {"local": str(workdir / "mds"), "split": "train"}},
            "max_seq_len": 64,
            "packing_window": 64,
        },
        "global_train_batch_size": 8,
        "batch_size_warmup": {"start_batch_size": 4, "warmup_tokens": 1024},
        "optimizer": {"name": "stable_adamw", "lr": 3.0e-3},
        "scheduler": {"name": "warmup_stable_decay", "t_warmup": "3ba", "t_decay": "0.25dur"},
        "max_duration": f"{GOLDEN_STEPS}ba",
        "precision": "fp32",
        "loggers": {"jsonl": {}},
        "metrics_file": str(workdir / "metrics.jsonl"),
        "save_folder": None,
    }


def golden_losses(workdir: Path) -> list[float]:
    """Train the golden recipe in this process (one torch thread); its loss per step."""
    import torch

    from ..train.trainer import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(golden_recipe(workdir))
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss/train/total"] for r in rows if "loss/train/total" in r]


def read_golden(path: Path = GOLDEN_FILE) -> list[float]:
    return json.loads(path.read_text())["losses"]


def write_golden(losses: list[float], path: Path = GOLDEN_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    note = "regenerate with: python scripts/bench.py quality golden --update"
    path.write_text(json.dumps({"note": note, "steps": len(losses), "losses": losses}, indent=1))


def compare(losses: list[float], golden: list[float], rtol: float = GOLDEN_RTOL) -> list[str]:
    """One line per step whose loss left the golden curve (empty: the curve holds)."""
    if len(losses) != len(golden):
        return [f"{len(losses)} steps logged, the golden file has {len(golden)}"]
    return [
        f"step {i}: loss {got:.6f}, golden {want:.6f} (rel diff {abs(got - want) / want:.2e})"
        for i, (got, want) in enumerate(zip(losses, golden))
        if abs(got - want) > rtol * abs(want)
    ]
