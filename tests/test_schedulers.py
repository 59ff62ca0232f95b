"""LR schedules, checked numerically on a fake trainer state."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from composer.core import Time, Timestamp
from composer.optim.scheduler import compile_composer_scheduler

from modernbert.train.schedulers import (
    SCHEDULERS,
    ConstantWithWarmupConfig,
    CosineWithWarmupConfig,
    WarmupStableDecayConfig,
    WarmupStableDecayScheduler,
    build_scheduler,
)


def state_at(max_duration: str, dataloader_len: int | None = None, **time: int):
    """The parts of a Composer State that schedulers read."""
    return SimpleNamespace(
        max_duration=Time.from_timestring(max_duration),
        dataloader_len=None if dataloader_len is None else Time(dataloader_len, "ba"),
        timestamp=Timestamp(**time),
    )


def curve(scheduler, max_duration: str, unit: str, points, **extra):
    return [scheduler(state_at(max_duration, **{unit: p}, **extra)) for p in points]


def test_wsd_linear_warmup_stable_decay_in_batches():
    wsd = WarmupStableDecayScheduler(
        t_warmup="10ba", t_decay="20ba", decay_shape="linear", alpha_f=0
    )
    values = curve(wsd, "100ba", "batch", [0, 5, 10, 50, 79, 80, 90, 95, 100, 120])
    expected = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.0, 0.0]
    assert values == pytest.approx(expected)


def test_wsd_1_sqrt_shape_and_alpha_floor():
    wsd = WarmupStableDecayScheduler("0ba", "0.5dur", "1-sqrt", 0.0)
    # decay starts at batch 100 of 200; at 100 + 100*f the multiplier is 1 - sqrt(f)
    for f in (0.0, 0.04, 0.25, 0.36, 0.81, 1.0):
        batch = 100 + round(100 * f)
        assert wsd(state_at("200ba", batch=batch)) == pytest.approx(1 - math.sqrt(f))
    assert wsd(state_at("200ba", batch=0)) == 1.0  # no warmup at all
    floored = WarmupStableDecayScheduler("0ba", "0.5dur", "1-sqrt", alpha_f=0.1)
    assert floored(state_at("200ba", batch=200)) == pytest.approx(0.1)  # decay end value
    assert floored(state_at("200ba", batch=164)) == pytest.approx(0.2)
    assert floored(state_at("200ba", batch=190)) == pytest.approx(0.1)  # floored


def test_wsd_token_durations_ignore_batch_count():
    # batch-size warmup makes batches carry different token counts: tokens decide
    wsd = WarmupStableDecayScheduler("1_000tok", "0.2dur", "linear", 0.0)
    values = curve(wsd, "10_000tok", "token", [0, 250, 1000, 7999, 8000, 9000, 10000], batch=3)
    assert values == pytest.approx([0.0, 0.25, 1.0, 1.0, 1.0, 0.5, 0.0])
    # warmup in its own unit (samples) while the decay follows max_duration (tokens)
    mixed = WarmupStableDecayScheduler("100sp", "2_000tok", "linear", 0.0)
    assert mixed(state_at("10_000tok", sample=50, token=9_000)) == pytest.approx(0.5)
    assert mixed(state_at("10_000tok", sample=50, token=100)) == pytest.approx(0.5)
    assert mixed(state_at("10_000tok", sample=200, token=9_500)) == pytest.approx(0.25)


def test_wsd_overlap_takes_the_smaller_multiplier_and_epochs_convert():
    wsd = WarmupStableDecayScheduler("80ba", "0.5dur", "linear", 0.0)
    assert wsd(state_at("100ba", batch=60)) == pytest.approx(min(60 / 80, 0.8))
    # max_duration in epochs: dur and epochs become batches through the dataloader length
    per_epoch = WarmupStableDecayScheduler("1ep", "1ep", "linear", 0.0)
    assert per_epoch(state_at("4ep", dataloader_len=10, batch=5)) == pytest.approx(0.5)
    assert per_epoch(state_at("4ep", dataloader_len=10, batch=20)) == 1.0
    assert per_epoch(state_at("4ep", dataloader_len=10, batch=35)) == pytest.approx(0.5)


def test_wsd_rejects_incompatible_units_and_shapes():
    with pytest.raises(ValueError, match=r"t_decay .* must be in the unit of max_duration"):
        WarmupStableDecayScheduler("0ba", "10ba", "linear", 0.0)(
            state_at("1000tok", batch=1, token=1)
        )
    with pytest.raises(ValueError, match="decay_shape 'cosine' unknown"):
        WarmupStableDecayScheduler("0ba", "0.1dur", "cosine", 0.0)


def test_registry_builds_composer_schedulers():
    assert set(SCHEDULERS) == {"warmup_stable_decay", "constant_with_warmup", "cosine_with_warmup"}
    wsd = build_scheduler(WarmupStableDecayConfig("warmup_stable_decay", "10ba", "0.1dur"))
    assert wsd(state_at("100ba", batch=95)) == pytest.approx(0.5)
    const = build_scheduler(ConstantWithWarmupConfig("constant_with_warmup", "10ba"))
    assert curve(const, "100ba", "batch", [5, 10, 99]) == pytest.approx([0.5, 1.0, 1.0])
    cosine = build_scheduler(CosineWithWarmupConfig("cosine_with_warmup", "10ba", alpha_f=0.1))
    assert curve(cosine, "110ba", "batch", [5, 10, 60, 110]) == pytest.approx([0.5, 1.0, 0.55, 0.1])


def test_scheduler_drives_an_optimizer_through_composer():
    """compile_composer_scheduler (what the Trainer does) turns multipliers into LRs."""
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=2.0)
    state = state_at("10ba", batch=0)
    state.optimizers = [opt]
    sched = compile_composer_scheduler(
        WarmupStableDecayScheduler("4ba", "0.5dur", "linear", 0.0), state
    )
    lrs = [opt.param_groups[0]["lr"]]
    for batch in range(1, 10):
        opt.step()
        state.timestamp = Timestamp(batch=batch)
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 1.6, 1.2, 0.8, 0.4])
