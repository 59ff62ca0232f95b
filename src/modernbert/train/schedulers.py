"""Learning-rate schedules as Composer schedulers, picked by name from `SCHEDULERS`.

ModernBERT trains with warmup-stable-decay (WSD): a linear warmup, a long flat phase, and a
decay at the end of the run (linear, or `1-sqrt` for the final decay phase). Because the flat
phase does not depend on the run length, a run can be extended or continued by a separate
decay phase without re-planning the schedule.

Durations are Composer time strings in tokens, batches, samples, epochs or a fraction of the
run (`dur`), converted with Composer's own rules (`_convert_time`, as its built-in schedulers
do): `dur` is a fraction of `state.max_duration`, epochs become batches. Tokens are the
trainer's token count (real tokens with our DataSpec), so a schedule in tokens is unaffected
by batch-size warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from composer.core import State, Time, TimeUnit
from composer.optim.scheduler import (
    ComposerScheduler,
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    _convert_time,
)

from modernbert.train.registry import Registry
from modernbert.train.typed_yaml import Duration, parse_time

SCHEDULERS: Registry = Registry("scheduler")

DECAY_SHAPES = {
    # fraction of the decay elapsed (0..1) -> LR multiplier before the alpha_f floor
    "linear": lambda frac: 1.0 - frac,
    "1-sqrt": lambda frac: 1.0 - math.sqrt(frac),
}


class WarmupStableDecayScheduler(ComposerScheduler):
    """Linear warmup over `t_warmup`, flat at 1, then decay over the last `t_decay` of the run.

    Multiplier: `t / t_warmup` during warmup; 1 while stable; during the decay
    `max(alpha_f, shape(frac))` with `frac = (t - t_decay_start) / t_decay` and
    `shape` = `1 - frac` (linear) or `1 - sqrt(frac)` (1-sqrt), so the run ends at `alpha_f`.
    If warmup and decay overlap the smaller multiplier wins. The warmup is measured in its own
    unit; the decay in the unit of `max_duration` (the decay is anchored to the run's end).
    """

    def __init__(
        self, t_warmup: str | Time, t_decay: str | Time, decay_shape: str, alpha_f: float
    ) -> None:
        # no defaults here: they live in WarmupStableDecayConfig
        if decay_shape not in DECAY_SHAPES:
            raise ValueError(f"decay_shape '{decay_shape}' unknown; valid: {sorted(DECAY_SHAPES)}")
        self.t_warmup = parse_time(t_warmup) if isinstance(t_warmup, str) else t_warmup
        self.t_decay = parse_time(t_decay) if isinstance(t_decay, str) else t_decay
        self.shape = DECAY_SHAPES[decay_shape]
        self.alpha_f = alpha_f

    def __call__(self, state: State, ssr: float = 1.0) -> float:
        if state.max_duration is None:
            raise RuntimeError("WarmupStableDecayScheduler needs state.max_duration")
        t_warmup = _convert_time(self.t_warmup, state)  # warmup is not scaled by ssr
        warm = 1.0
        if t_warmup.value > 0:
            warm = min(1.0, state.timestamp.get(t_warmup.unit).value / t_warmup.value)

        t_end = _convert_time(Time(1.0, TimeUnit.DURATION), state, ssr)
        t_decay = _convert_time(self.t_decay, state, ssr)
        if t_decay.unit != t_end.unit:
            raise ValueError(
                f"t_decay {self.t_decay} must be in the unit of max_duration "
                f"{state.max_duration} (or a fraction 'dur')"
            )
        now = state.timestamp.get(t_end.unit).value
        decay_start = t_end.value - t_decay.value
        if now < decay_start:
            decay = 1.0
        elif t_decay.value <= 0:
            decay = self.alpha_f
        else:
            frac = min(1.0, (now - decay_start) / t_decay.value)
            decay = max(self.alpha_f, self.shape(frac))
        return min(warm, decay)


# -- options (the YAML `scheduler:` section) and problems found before training ----------


def _effective(t: Time, max_duration: Time) -> tuple[TimeUnit, float | None]:
    """(unit, value) a duration has once converted like `_convert_time` would, without State.

    Epochs become batches (value unknown without the dataloader length); `dur` becomes a
    fraction of max_duration.
    """
    max_unit = TimeUnit.BATCH if max_duration.unit == TimeUnit.EPOCH else max_duration.unit
    if t.unit == TimeUnit.DURATION:
        known = max_duration.unit != TimeUnit.EPOCH
        return max_unit, (t.value * max_duration.value if known else None)
    if t.unit == TimeUnit.EPOCH:
        return TimeUnit.BATCH, None
    return t.unit, float(t.value)


def _max_effective(max_duration: Time) -> tuple[TimeUnit, float | None]:
    return _effective(Time(1.0, TimeUnit.DURATION), max_duration)


@dataclass
class WarmupStableDecayConfig:
    """Options of `warmup_stable_decay` (see WarmupStableDecayScheduler)."""

    name: str  # registry name: warmup_stable_decay
    t_warmup: Duration  # linear warmup from 0 to the peak LR (e.g. 3_000_000_000tok, 0ba)
    t_decay: Duration = "0.1dur"  # decay over the last part of the run; max_duration's unit or dur
    decay_shape: Literal["linear", "1-sqrt"] = "linear"  # shape of the final decay
    alpha_f: float = 0.0  # LR multiplier floor reached at the end of the decay

    def problems(self, max_duration: Time, path: str = "scheduler") -> list[str]:
        out = _alpha_problems(self.alpha_f, path)
        max_unit, max_value = _max_effective(max_duration)
        decay_unit, decay_value = _effective(parse_time(self.t_decay), max_duration)
        warm_unit, warm_value = _effective(parse_time(self.t_warmup), max_duration)
        if decay_unit != max_unit:
            out.append(
                f"{path}.t_decay: '{self.t_decay}' must use the unit of max_duration "
                f"('{max_duration}') or be a fraction like '0.1dur'"
            )
        elif decay_value is not None and max_value is not None:
            if decay_value > max_value:
                out.append(f"{path}.t_decay: '{self.t_decay}' is longer than max_duration")
            elif (
                warm_unit == max_unit
                and warm_value is not None
                and warm_value + decay_value > max_value
            ):
                out.append(
                    f"{path}: t_warmup '{self.t_warmup}' + t_decay '{self.t_decay}' exceed "
                    f"max_duration '{max_duration}' (warmup and decay would overlap)"
                )
        return out


@dataclass
class ConstantWithWarmupConfig:
    """Options of `constant_with_warmup` (Composer's ConstantWithWarmupScheduler)."""

    name: str  # registry name: constant_with_warmup
    t_warmup: Duration  # linear warmup, then constant until the end

    def problems(self, max_duration: Time, path: str = "scheduler") -> list[str]:
        return _warmup_unit_problems(self.t_warmup, "1dur", max_duration, path)


@dataclass
class CosineWithWarmupConfig:
    """Options of `cosine_with_warmup` (Composer's CosineAnnealingWithWarmupScheduler)."""

    name: str  # registry name: cosine_with_warmup
    t_warmup: Duration  # linear warmup, then cosine decay
    t_max: Duration = "1dur"  # end of the cosine (must reach at least max_duration)
    alpha_f: float = 0.0  # LR multiplier at t_max

    def problems(self, max_duration: Time, path: str = "scheduler") -> list[str]:
        out = _alpha_problems(self.alpha_f, path)
        out += _warmup_unit_problems(self.t_warmup, self.t_max, max_duration, path)
        max_unit, max_value = _max_effective(max_duration)
        t_unit, t_value = _effective(parse_time(self.t_max), max_duration)
        if t_unit == max_unit and None not in (t_value, max_value) and t_value < max_value:
            out.append(f"{path}.t_max: '{self.t_max}' is shorter than max_duration")
        return out


def _alpha_problems(alpha_f: float, path: str) -> list[str]:
    return [] if 0.0 <= alpha_f <= 1.0 else [f"{path}.alpha_f: {alpha_f} is outside [0, 1]"]


def _warmup_unit_problems(t_warmup: str, t_max: str, max_duration: Time, path: str) -> list[str]:
    """Composer's warmup schedulers need warmup and t_max in the same unit after conversion."""
    warm_unit, _ = _effective(parse_time(t_warmup), max_duration)
    max_unit, _ = _effective(parse_time(t_max), max_duration)
    if warm_unit != max_unit:
        return [
            f"{path}.t_warmup: '{t_warmup}' must use the unit of t_max/max_duration "
            f"('{max_unit.value}') or be a fraction like '0.01dur'"
        ]
    return []


@SCHEDULERS.register("warmup_stable_decay", options=WarmupStableDecayConfig)
def _wsd(cfg: WarmupStableDecayConfig) -> ComposerScheduler:
    return WarmupStableDecayScheduler(cfg.t_warmup, cfg.t_decay, cfg.decay_shape, cfg.alpha_f)


@SCHEDULERS.register("constant_with_warmup", options=ConstantWithWarmupConfig)
def _constant(cfg: ConstantWithWarmupConfig) -> ComposerScheduler:
    return ConstantWithWarmupScheduler(t_warmup=parse_time(cfg.t_warmup))


@SCHEDULERS.register("cosine_with_warmup", options=CosineWithWarmupConfig)
def _cosine(cfg: CosineWithWarmupConfig) -> ComposerScheduler:
    return CosineAnnealingWithWarmupScheduler(
        t_warmup=parse_time(cfg.t_warmup), t_max=parse_time(cfg.t_max), alpha_f=cfg.alpha_f
    )


def build_scheduler(cfg: object) -> ComposerScheduler:
    """The Composer scheduler for a converted `scheduler:` section (any registered options)."""
    return SCHEDULERS.get(cfg.name)(cfg)  # type: ignore[attr-defined]
