"""Callbacks and loggers on a real Composer State with fake batches and timestamps."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest
import torch
from composer.callbacks import LRMonitor
from composer.core import State, Timestamp
from composer.devices import DeviceCPU
from composer.loggers import ConsoleLogger, InMemoryLogger, Logger

from modernbert.bench.flops import step_flops
from modernbert.data.config import MLMLoaderConfig, StreamConfig
from modernbert.data.flat import FlatBatchBuilder
from modernbert.model import ModernBertConfig
from modernbert.train import loggers as loggers_module
from modernbert.train.callbacks import (
    CALLBACKS,
    GradNormConfig,
    GradNormMonitor,
    NoOptions,
    PackingEfficiency,
    SpeedMonitor,
    SpeedMonitorConfig,
    build_callbacks,
    detect_peak_flops,
)
from modernbert.train.config import TrainConfig
from modernbert.train.loggers import ConsoleConfig, JsonlConfig, JsonlLogger, build_loggers
from modernbert.train.schedulers import WarmupStableDecayConfig

TINY = ModernBertConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    local_attention=16,
    max_position_embeddings=256,
    pad_token_id=0,
    cls_token_id=1,
    sep_token_id=2,
    mask_token_id=3,
)


def recipe(**changes) -> TrainConfig:
    base = dict(
        run_name="t",
        tokenizer="tok",
        train_loader=MLMLoaderConfig(streams={"a": StreamConfig(local="x")}, max_seq_len=128),
        scheduler=WarmupStableDecayConfig("warmup_stable_decay", "0ba"),
        max_duration="10ba",
        global_train_batch_size=8,
        model=TINY,
        precision="fp32",
    )
    base.update(changes)
    return TrainConfig(**base)


def make_state(model: torch.nn.Module | None = None) -> tuple[State, InMemoryLogger, Logger]:
    state = State(
        model=model or torch.nn.Linear(2, 2),
        rank_zero_seed=0,
        run_name="t",
        device=DeviceCPU(),
        max_duration="10ba",
    )
    memory = InMemoryLogger()
    logger = Logger(state, [memory])
    memory.init(state, logger)
    return state, memory, logger


def at(state: State, batch: int, seconds: float = 0.0, tokens: int = 0) -> None:
    state.timestamp = Timestamp(
        batch=batch, token=tokens, total_wct=datetime.timedelta(seconds=seconds)
    )


def mask(rows: int, length: int, real: list[int], masked: int = 0) -> dict:
    """A flat batch of `rows` rows of `length` slots, row r one document of real[r] tokens,
    the first `masked` tokens of each row labelled."""
    assert len(real) == rows
    builder = FlatBatchBuilder(length)
    for n in real:
        labels = np.full(n, -100)
        labels[:masked] = 7
        builder.add_row(np.full(n, 9), np.array([n]), labels)
    return builder.build()


def last(memory: InMemoryLogger, key: str) -> float:
    return memory.data[key][-1][1]


def test_peak_flops_none_on_cpu_or_fp32():
    assert detect_peak_flops("fp32") is None
    if not torch.cuda.is_available():
        assert detect_peak_flops("amp_bf16") is None


@pytest.mark.parametrize(
    ("device_name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756.0e12),
        ("NVIDIA H100 NVL", 835.0e12),
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", 312.0e12),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_flops_from_device_name(monkeypatch, device_name, peak):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: device_name)
    assert detect_peak_flops("amp_bf16") == peak
    assert detect_peak_flops("fp32") is None  # bf16 peaks say nothing about fp32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_callbacks_on_gpu_tensors():
    model = torch.nn.Linear(4, 4, bias=False).cuda()
    model.weight.grad = torch.full((4, 4), 0.5, device="cuda")  # norm 2
    state, memory, logger = make_state(model)
    GradNormMonitor(max_norm=1.0, interval=1).after_train_batch(state, logger)
    assert last(memory, "grad_norm/total") == pytest.approx(2.0)
    assert model.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    state.batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in mask(2, 4, [4, 2]).items()}
    PackingEfficiency().before_train_batch(state, logger)
    assert last(memory, "data/packing_efficiency") == pytest.approx(0.75)


def test_speed_monitor_counts_real_tokens_only():
    state, memory, logger = make_state()
    speed = SpeedMonitor(window_size=2, model=TINY, peak_flops=1e9)
    state.batch = mask(2, 8, [5, 5])  # 10 real tokens out of 16 slots
    at(state, 1, seconds=1.0)
    speed.batch_end(state, logger)
    assert "throughput/tokens_per_sec" not in memory.data  # needs two points in time
    state.batch = mask(2, 8, [8, 2], masked=1)  # 10 real, 2 masked
    at(state, 2, seconds=2.0)
    speed.batch_end(state, logger)
    assert last(memory, "throughput/tokens_per_sec") == pytest.approx(10.0)
    assert last(memory, "throughput/samples_per_sec") == pytest.approx(2.0)
    # MFU: the model FLOPs of that batch (documents of 8 and 2 tokens, 2 masked) per second
    flops = step_flops(TINY, [8, 2], 2, "train")
    assert last(memory, "throughput/mfu") == pytest.approx(flops / 1.0 / 1e9)
    state.batch = mask(2, 8, [8, 8])  # 16 real
    at(state, 3, seconds=4.0)
    speed.batch_end(state, logger)
    assert last(memory, "throughput/tokens_per_sec") == pytest.approx((10 + 16) / 3.0)
    assert last(memory, "throughput/batches_per_sec") == pytest.approx(2 / 3.0)
    flops += step_flops(TINY, [8, 8], 0, "train")
    assert last(memory, "throughput/mfu") == pytest.approx(flops / 3.0 / 1e9)
    state.batch = mask(2, 8, [1, 1])
    at(state, 4, seconds=5.0)
    speed.batch_end(state, logger)  # window of 2 batches: the first one has dropped out
    assert last(memory, "throughput/tokens_per_sec") == pytest.approx((16 + 2) / 3.0)


def test_speed_monitor_without_peak_logs_no_mfu():
    state, memory, logger = make_state()
    speed = SpeedMonitor(window_size=1, model=TINY, peak_flops=None)
    for batch in (1, 2):
        state.batch = mask(1, 4, [4])
        at(state, batch, seconds=float(batch))
        speed.batch_end(state, logger)
    assert last(memory, "throughput/tokens_per_sec") == pytest.approx(4.0)
    assert "throughput/mfu" not in memory.data


def test_packing_efficiency():
    state, memory, logger = make_state()
    state.batch = mask(4, 8, [8, 8, 6, 2])
    at(state, 3)
    PackingEfficiency().before_train_batch(state, logger)
    assert memory.data["data/packing_efficiency"] == [(state.timestamp, 24 / 32)]


def model_with_grads() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1, bias=False))
    grads = [torch.full((2, 2), 1.0), torch.full((2,), 1.0), torch.full((1, 2), 2.0)]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.clone()
    return model  # total norm sqrt(4 + 2 + 8) = sqrt(14)


def test_grad_norm_logged_before_clipping_and_clips():
    model = model_with_grads()
    state, memory, logger = make_state(model)
    GradNormMonitor(max_norm=1.0, interval=1).after_train_batch(state, logger)
    assert last(memory, "grad_norm/total") == pytest.approx(14**0.5)
    assert last(memory, "grad_norm/clipped") == 1.0
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert clipped.item() == pytest.approx(1.0, rel=1e-4)


def test_grad_norm_without_clipping_leaves_gradients():
    model = model_with_grads()
    state, memory, logger = make_state(model)
    GradNormMonitor(max_norm=None, interval=1).after_train_batch(state, logger)
    assert last(memory, "grad_norm/total") == pytest.approx(14**0.5)
    assert "grad_norm/clipped" not in memory.data
    assert torch.equal(model[1].weight.grad, torch.full((1, 2), 2.0))
    GradNormMonitor(max_norm=10.0, interval=1).after_train_batch(state, logger)  # under limit
    assert last(memory, "grad_norm/clipped") == 0.0
    assert torch.equal(model[1].weight.grad, torch.full((1, 2), 2.0))


def test_grad_norm_reads_the_device_at_its_interval_only():
    model = model_with_grads()
    state, memory, logger = make_state(model)
    monitor = GradNormMonitor(max_norm=3.0, interval=3)
    for batch, scale in enumerate([1.0, 0.1, 1.0, 0.1]):  # norms sqrt(14) ~ 3.74 or 0.37
        for p in model.parameters():
            p.grad = torch.ones_like(p) * scale * (2.0 if p.shape == (1, 2) else 1.0)
        at(state, batch)
        monitor.after_train_batch(state, logger)
        logged = len(memory.data.get("grad_norm/total", []))
        assert logged == (1 if batch >= 2 else 0)  # logged after the 3rd step only
    assert last(memory, "grad_norm/total") == pytest.approx(14**0.5)  # the 3rd step's
    assert last(memory, "grad_norm/max") == pytest.approx(14**0.5)
    assert last(memory, "grad_norm/clipped") == pytest.approx(2 / 3)
    assert len(monitor.pending) == 1  # the 4th waits for the next interval or the fit's end
    monitor.fit_end(state, logger)
    assert last(memory, "grad_norm/total") == pytest.approx(0.1 * 14**0.5)
    with pytest.raises(ValueError, match="interval"):
        GradNormMonitor(max_norm=None, interval=0)


def test_build_callbacks_from_recipe():
    cfg = recipe(
        callbacks={
            "speed_monitor": SpeedMonitorConfig(window_size=3, peak_flops=1e12),
            "lr_monitor": NoOptions(),
            "packing_efficiency": NoOptions(),
            "memory_monitor": NoOptions(),
        },
        max_grad_norm=0.5,
    )
    built = build_callbacks(cfg)
    kinds = [type(cb) for cb in built]
    expected = [SpeedMonitor, LRMonitor, PackingEfficiency]
    if torch.cuda.is_available():
        expected.append(pytest.importorskip("composer.callbacks").MemoryMonitor)
    assert kinds == [*expected, GradNormMonitor]  # grad_norm added: it does the clipping
    speed = built[0]
    assert speed.peak_flops == 1e12 and speed.model is TINY
    assert built[-1].max_norm == 0.5 and built[-1].interval == GradNormConfig().interval
    assert build_callbacks(recipe()) == []
    assert set(CALLBACKS) == {
        "speed_monitor",
        "lr_monitor",
        "grad_norm",
        "packing_efficiency",
        "memory_monitor",
    }


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_logger_one_line_per_step(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    jsonl = JsonlLogger(path)
    state, _, _ = make_state()
    logger = Logger(state, [jsonl])
    at(state, 0, tokens=0)
    jsonl.init(state, logger)
    logger.log_metrics({"loss/train/total": torch.tensor(2.5), "flag": True})
    at(state, 1, tokens=100)  # batch 0 done; Composer logs the next LR at step 1
    logger.log_metrics({"lr": 0.1})
    jsonl.batch_end(state, logger)
    # step 0 is complete and on disk before the run ends (flushed)
    assert read_lines(path) == [{"step": 0, "tokens": 0, "loss/train/total": 2.5, "flag": 1}]
    logger.log_metrics({"loss/train/total": 2.0, "ignored": "text", "vector": torch.ones(3)})
    logger.log_metrics({"metrics/eval/acc": 0.5}, step=1)
    at(state, 2, tokens=200)
    logger.log_metrics({"lr": 0.2})
    jsonl.batch_end(state, logger)
    jsonl.fit_end(state, logger)
    lines = read_lines(path)
    assert lines[1] == {
        "step": 1,
        "tokens": 100,
        "lr": 0.1,
        "loss/train/total": 2.0,
        "metrics/eval/acc": 0.5,
    }
    assert lines[2] == {"step": 2, "tokens": 200, "lr": 0.2}
    jsonl.close(state, logger)
    # a resumed run appends
    again = JsonlLogger(path)
    again.init(state, logger)
    again.log_metrics({"lr": 0.3})
    again.close(state, logger)
    assert len(read_lines(path)) == 4


def test_jsonl_logger_only_on_rank_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(loggers_module.dist, "get_global_rank", lambda: 1)
    jsonl = JsonlLogger(tmp_path / "m.jsonl")
    state, _, _ = make_state()
    logger = Logger(state, [jsonl])
    jsonl.init(state, logger)
    logger.log_metrics({"a": 1.0})
    jsonl.close(state, logger)
    assert not (tmp_path / "m.jsonl").exists()


def test_build_loggers(tmp_path):
    cfg = recipe(
        loggers={"jsonl": JsonlConfig(), "console": ConsoleConfig("5ba")},
        metrics_file=str(tmp_path / "m.jsonl"),
    )
    jsonl, console = build_loggers(cfg)
    assert isinstance(jsonl, JsonlLogger) and jsonl.path == tmp_path / "m.jsonl"
    assert isinstance(console, ConsoleLogger)


def test_metrics_file_adds_the_jsonl_logger_when_loggers_lack_it(tmp_path):
    cfg = recipe(loggers={"console": ConsoleConfig("5ba")}, metrics_file=str(tmp_path / "m.jsonl"))
    console, jsonl = build_loggers(cfg)
    assert isinstance(console, ConsoleLogger)
    assert isinstance(jsonl, JsonlLogger) and jsonl.path == tmp_path / "m.jsonl"
    assert "jsonl" not in cfg.loggers  # the recipe itself is left as written
    no_file = recipe(loggers={"console": ConsoleConfig("5ba")}, metrics_file=None)
    assert [type(d) for d in build_loggers(no_file)] == [ConsoleLogger]
