"""The part-1 components inside a real Composer Trainer (toy model, a few CPU steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from composer import Trainer
from composer.core import DataSpec
from composer.models import ComposerModel

from modernbert.data.config import MLMLoaderConfig, StreamConfig
from modernbert.data.flat import FlatBatchBuilder, split_flat_batch
from modernbert.data.loader import num_samples_in_batch, num_tokens_in_batch
from modernbert.train.callbacks import (
    GradNormConfig,
    NoOptions,
    SpeedMonitorConfig,
    build_callbacks,
)
from modernbert.train.config import TrainConfig
from modernbert.train.loggers import JsonlConfig, WandBConfig, build_loggers
from modernbert.train.optim import OptimizerConfig, build_optimizer
from modernbert.train.schedulers import WarmupStableDecayConfig, build_scheduler

VOCAB, ROWS, LENGTH, BATCHES = 32, 4, 8, 8
REAL = [8, 6, 4, 6]  # real tokens per row: 24 of 32 slots


class ToyMLM(ComposerModel):
    """Embedding + linear classifier of the masked tokens of a flat batch (docs/interfaces.md)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.out = torch.nn.Linear(16, VOCAB)

    def forward(self, batch):
        hidden = self.emb(batch["input_ids"].index_select(0, batch["masked_positions"]))
        return self.out(self.norm(hidden))

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch["masked_labels"])


def batches() -> list[dict]:
    """Flat batches: row r one document of REAL[r] tokens, every token labelled."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(BATCHES):
        builder = FlatBatchBuilder(LENGTH)
        for n in REAL:
            ids = rng.integers(0, VOCAB, n)
            builder.add_row(ids, np.array([n]), ids.copy())
        out.append(builder.build())
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_components_in_a_composer_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    metrics = tmp_path / "metrics.jsonl"
    cfg = TrainConfig(
        run_name="toy",
        tokenizer="unused",
        train_loader=MLMLoaderConfig(streams={"a": StreamConfig(local="x")}, max_seq_len=LENGTH),
        scheduler=WarmupStableDecayConfig(
            "warmup_stable_decay", t_warmup="64tok", t_decay="0.5dur", decay_shape="1-sqrt"
        ),
        max_duration=f"{BATCHES}ba",
        global_train_batch_size=ROWS,
        optimizer=OptimizerConfig(lr=1e-2),
        max_grad_norm=1e-3,  # tiny, so every step is clipped
        callbacks={
            "speed_monitor": SpeedMonitorConfig(window_size=2, peak_flops=1e9),
            "lr_monitor": NoOptions(),
            "grad_norm": GradNormConfig(interval=1),
            "packing_efficiency": NoOptions(),
        },
        loggers={"jsonl": JsonlConfig(), "wandb": WandBConfig(project="toy", dir=str(tmp_path))},
        metrics_file=str(metrics),
        precision="fp32",
    )
    model = ToyMLM()
    data = DataSpec(
        batches(),
        get_num_samples_in_batch=num_samples_in_batch,
        get_num_tokens_in_batch=num_tokens_in_batch,
        split_batch=split_flat_batch,
    )
    trainer = Trainer(
        model=model,
        train_dataloader=data,
        max_duration=cfg.max_duration,
        optimizers=build_optimizer(cfg.optimizer, model),
        schedulers=build_scheduler(cfg.scheduler),
        callbacks=build_callbacks(cfg),
        loggers=build_loggers(cfg),
        device="cpu",
        precision=cfg.precision,
        device_train_microbatch_size=ROWS,
        progress_bar=False,
        log_to_console=False,
        seed=1,
    )
    trainer.fit()
    trainer.close()

    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(BATCHES + 1))
    real = sum(REAL)
    assert [line["tokens"] for line in lines] == [real * s for s in range(BATCHES + 1)]
    train = lines[:BATCHES]
    assert all("loss/train/total" in line for line in train)
    assert all(line["data/packing_efficiency"] == pytest.approx(24 / 32) for line in train)
    assert all(line["grad_norm/total"] > 1e-3 and line["grad_norm/clipped"] == 1 for line in train)
    # LR of the line of step s = the LR batch s trains with: 1-sqrt WSD on real tokens
    # (warmup 64 tokens = 2.67 batches, decay over the second half, 96 tokens). Composer steps
    # its schedulers before advancing the timestamp, so batch s uses the value at step s - 1.
    lr = [line.get("lr-StableAdamW/group0") for line in lines[1:]]
    expected = []
    for step in range(1, BATCHES + 1):
        tokens = real * (step - 1)
        warm = min(1.0, tokens / 64)
        frac = max(0.0, (tokens - 96) / 96)
        expected.append(1e-2 * min(warm, 1 - frac**0.5))
    assert lr == pytest.approx(expected)
    assert lines[2]["throughput/tokens_per_sec"] > 0 and "throughput/mfu" in lines[2]
    assert lines[-1]["lr-StableAdamW/group0"] == pytest.approx(1e-2 * (1 - (72 / 96) ** 0.5))
    assert list(tmp_path.glob("wandb/offline-run-*")), "wandb wrote an offline run"
