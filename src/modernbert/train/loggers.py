"""Logger destinations by name (`LOGGERS`): a local jsonl file, Weights & Biases, the console.

`jsonl` is the run's own record: one JSON object per training step, readable without any
service (plots, tests, resume checks). The recipe's `metrics_file` is its switch: a non-null
`metrics_file` is always written (`build_loggers` adds the jsonl logger when `loggers` lacks
it), and `metrics_file: null` writes none. `wandb` works offline with `WANDB_MODE=offline`.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from composer.core import State
from composer.loggers import ConsoleLogger, Logger, LoggerDestination, WandBLogger
from composer.utils import dist

from modernbert.train.registry import Registry
from modernbert.train.typed_yaml import Interval

if TYPE_CHECKING:
    from modernbert.train.config import TrainConfig

LOGGERS: Registry = Registry("logger")


class JsonlLogger(LoggerDestination):
    """Writes one JSON line per step: `{"step", "tokens", <every metric logged at that step>}`.

    Steps follow Composer's logger: `step` is the number of batches completed when a metric was
    logged, so the line of step s holds the training loss and gradient norm of batch s and the
    figures Composer logs after batch s-1 ends (LR for batch s, throughput, evaluation).
    `tokens` is Composer's token count at that step (tokens trained on before batch s).
    A line is written, and flushed, once its step is complete (at the end of the batch), so
    a killed run loses at most the step in flight. The file is appended to: after a resume,
    steps replayed from the last checkpoint appear again and the last line of a step wins.
    Only global rank 0 writes; non-finite values are written as `NaN`/`Infinity`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._state: State | None = None
        self._pending: dict[int, dict[str, Any]] = {}

    def init(self, state: State, logger: Logger) -> None:
        del logger
        self._state = state
        if dist.get_global_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._file is None:
            return
        timestamp = self._state.timestamp if self._state is not None else None
        if step is None:
            step = timestamp.batch.value if timestamp is not None else 0
        if step not in self._pending:
            tokens = timestamp.token.value if timestamp is not None else None
            self._pending[step] = {"step": step, "tokens": tokens}
        for key, value in metrics.items():
            number = _to_number(value)
            if number is not None:
                self._pending[step][key] = number

    def batch_end(self, state: State, logger: Logger) -> None:
        self.write(until=state.timestamp.batch.value - 1)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.write()

    def eval_standalone_end(self, state: State, logger: Logger) -> None:
        self.write()

    def close(self, state: State, logger: Logger) -> None:
        self.write()
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, until: int | None = None) -> None:
        """Write (and flush) the buffered steps up to `until` (all when None), in step order."""
        if self._file is None:
            return
        for step in sorted(self._pending):
            if until is not None and step > until:
                break
            self._file.write(json.dumps(self._pending.pop(step)) + "\n")
        self._file.flush()


def _to_number(value: Any) -> float | int | None:
    """A metric as a JSON number (tensors of one element included); None if not a number."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.detach().item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


class WandBDestination(WandBLogger):
    """Composer's WandBLogger, made to work with wandb releases that dropped `Run.get_url`.

    Composer 0.32.1 calls `wandb.run.get_url()` in `init`; wandb 0.31 only has the `url`
    property, so the stock logger fails at the first event. Adding the method back (once,
    only if missing) keeps the pinned Composer working with current wandb.
    """

    def init(self, state: State, logger: Logger) -> None:
        from wandb.sdk.wandb_run import Run

        if not hasattr(Run, "get_url"):
            Run.get_url = lambda run: run.url
        super().init(state, logger)


# -- options (the YAML `loggers:` entries) and builders ------------------------------------


@dataclass
class JsonlConfig:
    """The path comes from the recipe's `metrics_file`."""


@dataclass
class WandBConfig:
    project: str = "modernbert"  # W&B project
    entity: str | None = None  # W&B team or user (null: your default)
    group: str | None = None  # groups the phases of one model
    tags: list[str] = field(default_factory=list)  # free-form labels
    dir: str | None = None  # local folder for W&B files (null: $WANDB_DIR, else the cwd)


@dataclass
class ConsoleConfig:
    interval: Interval = "10ba"  # how often to print metrics


@LOGGERS.register("jsonl", options=JsonlConfig)
def _jsonl(opts: JsonlConfig, recipe: TrainConfig) -> LoggerDestination:
    if not recipe.metrics_file:
        raise ValueError("loggers.jsonl needs metrics_file")
    return JsonlLogger(recipe.metrics_file)


@LOGGERS.register("wandb", options=WandBConfig)
def _wandb(opts: WandBConfig, recipe: TrainConfig) -> LoggerDestination:
    from modernbert.train.config import recipe_to_dict  # config imports this module

    return WandBDestination(
        project=opts.project,
        entity=opts.entity,
        group=opts.group,
        name=recipe.run_name,
        tags=list(opts.tags),
        init_kwargs={"config": recipe_to_dict(recipe), **({"dir": opts.dir} if opts.dir else {})},
    )


@LOGGERS.register("console", options=ConsoleConfig)
def _console(opts: ConsoleConfig, recipe: TrainConfig) -> LoggerDestination:
    return ConsoleLogger(log_interval=opts.interval)


def logger_entries(recipe: TrainConfig) -> dict[str, object]:
    """The recipe's loggers by name, plus `jsonl` when `metrics_file` is set and it is missing:
    a run with a metrics file always writes it, whatever `loggers` lists."""
    entries = dict(recipe.loggers)
    if recipe.metrics_file and "jsonl" not in entries:
        entries["jsonl"] = JsonlConfig()
    return entries


def build_loggers(recipe: TrainConfig) -> list[LoggerDestination]:
    """The recipe's logger destinations, in order (`logger_entries`)."""
    return [LOGGERS.get(name)(opts, recipe) for name, opts in logger_entries(recipe).items()]
