"""Shared fixtures: a tiny real tokenizer and MDS corpus, built once per session.

Both come from the project's own data tools (byte-level BPE trainer, MDS converter) run on a
slice of this machine's standard library, so no hub and no network are involved. The
recipe helper gives a 2-layer d=64 model that trains in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS_BYTES = 300_000  # ~70k tokens: enough for a few dozen steps, built in a few seconds
TOKENIZER_VOCAB = 512


@dataclass(frozen=True)
class TinyCorpus:
    tokenizer: Path  # transformers tokenizer folder
    mds: Path  # OUTPUT with train/ and val/ MDS datasets
    vocab_size: int  # len(tokenizer), a multiple of 64
    special_ids: dict[str, int]  # the model config's *_token_id fields


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> TinyCorpus:
    from modernbert.data.prep.documents import Document
    from modernbert.data.prep.inputs import DocumentList
    from modernbert.data.prep.local_corpus import LocalCorpus
    from modernbert.data.prep.to_mds import convert
    from modernbert.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tiny_corpus")
    corpus = LocalCorpus(packages=("stdlib",), max_bytes=CORPUS_BYTES)
    docs = [doc for doc in corpus if isinstance(doc, Document)]
    tok = train_tokenizer((d.text for d in docs), TOKENIZER_VOCAB, output_dir=root / "tokenizer")
    convert([DocumentList(docs)], tok, root / "mds", val_fraction=0.15, workers=1, compression=None)
    ids = {
        "pad_token_id": tok.pad_token_id,
        "cls_token_id": tok.cls_token_id,
        "sep_token_id": tok.sep_token_id,
        "mask_token_id": tok.mask_token_id,
    }
    return TinyCorpus(root / "tokenizer", root / "mds", len(tok), ids)


def tiny_recipe(corpus: TinyCorpus, run_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A complete recipe for a 2-layer d=64 model on the tiny corpus, writing into run_dir."""
    recipe: dict[str, Any] = {
        "run_name": "tiny",
        "seed": 17,
        "tokenizer": str(corpus.tokenizer),
        "model": {
            "vocab_size": corpus.vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "local_attention": 32,
            **corpus.special_ids,
        },
        "train_loader": {
            "streams": {"local": {"local": str(corpus.mds), "split": "train"}},
            "max_seq_len": 64,
            "mlm_probability": 0.3,
            "packing_window": 256,
        },
        "eval_loader": {
            "streams": {"local": {"local": str(corpus.mds), "split": "val"}},
            "max_seq_len": 64,
            "mlm_probability": 0.15,
            "shuffle": False,
            "drop_last": False,
            "packing_window": 256,
        },
        "global_train_batch_size": 8,
        "device_train_microbatch_size": 4,
        "global_eval_batch_size": 8,
        "optimizer": {"name": "stable_adamw", "lr": 3.0e-3},
        "scheduler": {"name": "warmup_stable_decay", "t_warmup": "4ba", "t_decay": "0.25dur"},
        "max_duration": "30ba",
        "eval_interval": "15ba",
        "eval_subset_num_batches": 2,
        "precision": "fp32",
        "max_grad_norm": 1.0,
        "callbacks": {"lr_monitor": {}, "grad_norm": {}},
        "loggers": {"jsonl": {}},
        "save_folder": str(run_dir / "checkpoints"),
        "save_interval": "10ba",
        "save_num_checkpoints_to_keep": -1,
        "autoresume": False,
        "metrics_file": str(run_dir / "metrics.jsonl"),
    }
    for key, value in overrides.items():
        target = recipe
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return recipe


def write_recipe(recipe: dict[str, Any], path: Path) -> Path:
    """Save a recipe dict as YAML (JSON is valid YAML)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=2))
    return path


def read_losses(metrics_file: Path, key: str = "loss/train/total") -> dict[int, float]:
    """step -> training loss from a jsonl metrics file; a later line for a step wins."""
    losses: dict[int, float] = {}
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if key in row:
            losses[int(row["step"])] = float(row[key])
    return losses


def subprocess_env() -> dict[str, str]:
    """Environment for training subprocesses: quiet, offline, one thread per process."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_main(recipe: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python main.py RECIPE overrides...` in the repo root; raises with its output on failure."""
    cmd = [sys.executable, str(REPO / "main.py"), str(recipe), *overrides]
    done = subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done


PORT_TAKEN = "address already in use"  # the rendezvous port was taken by another process


def free_port() -> int:
    """A port free at this moment on the loopback interface (another process may take it
    before we bind it: launchers retry on PORT_TAKEN)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_composer(
    recipe: Path, *overrides: str, ranks: int = 2, timeout: float = 300, attempts: int = 3
) -> subprocess.CompletedProcess:
    """`composer -n RANKS main.py RECIPE overrides...` (gloo on the CPU), each rank's output in
    the recipe's folder as rank{N}.out / rank{N}.err (rank 0's stdout: the returned
    CompletedProcess's); raises with their tails on failure.

    The rendezvous port is picked free, but on a shared machine another process can take it
    before the launcher binds it; that failure (and only that one) is retried on a new port.
    """
    run_dir = recipe.parent
    for _ in range(attempts):
        cmd = [str(Path(sys.executable).with_name("composer")), "-n", str(ranks)]
        cmd += ["--master_port", str(free_port())]
        cmd += [
            "--stderr",
            str(run_dir / "rank{rank}.err"),
            "--stdout",
            str(run_dir / "rank{rank}.out"),
        ]
        cmd += [str(REPO / "main.py"), str(recipe), *overrides]
        done = subprocess.run(
            cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode == 0:
            return done
        errors = "".join(p.read_text()[-4000:] for p in sorted(run_dir.glob("rank*.err")))
        if PORT_TAKEN not in (done.stderr + errors).lower():
            break
    raise AssertionError(
        f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}\n{errors}"
    )
