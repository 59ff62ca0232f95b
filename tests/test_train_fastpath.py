"""The training fast path through Composer: the loader's flat batches, split by rows on the host,
reach the model with no device read in its forward + backward; microbatches weigh into exactly
the whole batch's loss; one rank runs unwrapped."""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch
from composer.core import Callback, State
from composer.loggers import Logger

from modernbert.data.flat import split_flat_batch
from modernbert.data.loader import build_mlm_dataloader
from modernbert.data.tokenizer import TokenSpec, load_tokenizer
from modernbert.model.syncs import SyncCounter, is_sync
from modernbert.train.config import RecipeError, load_recipe
from modernbert.train.trainer import build_model, build_trainer, parallelism_config_for

from conftest import read_losses, tiny_recipe, write_recipe


def _cfg(tiny_corpus, tmp_path, *overrides: str):
    recipe = tiny_recipe(tiny_corpus, tmp_path, eval_loader=None, save_folder=None)
    return load_recipe(write_recipe(recipe, tmp_path / "recipe.yaml"), list(overrides))


def _batch_and_model(tiny_corpus, tmp_path):
    cfg = _cfg(tiny_corpus, tmp_path)
    tokens = TokenSpec.from_tokenizer(load_tokenizer(cfg.tokenizer))
    loader = build_mlm_dataloader(cfg.train_loader, tokens, 8, seed=3, world_size=1, rank=0)
    return next(iter(loader)), build_model(cfg, tokens)


def _issuer() -> str:
    """The package whose code asked for the device read: the innermost frame outside torch."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename
        if "/torch/" in path or path == __file__:
            continue
        if "/src/modernbert/" in path:
            return "modernbert"
        return path.split("site-packages/")[-1].split("/")[0]
    return "?"


class SyncsBySource(SyncCounter):
    """A SyncCounter that also says which package issued each device read."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if is_sync(func, args, kwargs or {}):
            self.sources[_issuer()] += 1
        return super().__torch_dispatch__(func, types, args, kwargs)


class CountSyncs(Callback):
    """Counts device-reading ops in the model (BEFORE_FORWARD to AFTER_BACKWARD of every
    microbatch: forward, loss, backward) and, by source, over each whole step (BATCH_START to
    BATCH_END) and each gap after a step (its BATCH_END to the next BATCH_START: checkpoint
    and evaluation events and the fetch of the next batch; the last gap runs to FIT_END)."""

    def __init__(self) -> None:
        self.model_step = SyncCounter()
        self.steps: list[SyncsBySource] = []
        self.gaps: list[SyncsBySource] = []
        self.microbatches = 0
        self._open: list[SyncCounter] = []

    def _enter(self, counter: SyncCounter) -> None:
        counter.__enter__()
        self._open.append(counter)

    def _exit(self) -> None:
        self._open.pop().__exit__(None, None, None)

    def batch_start(self, state: State, logger: Logger) -> None:
        if self.gaps:
            self._exit()
        self.steps.append(SyncsBySource())
        self._enter(self.steps[-1])

    def before_forward(self, state: State, logger: Logger) -> None:
        self._enter(self.model_step)

    def after_backward(self, state: State, logger: Logger) -> None:
        self._exit()
        self.microbatches += 1

    def batch_end(self, state: State, logger: Logger) -> None:
        self._exit()
        self.gaps.append(SyncsBySource())
        self._enter(self.gaps[-1])

    def close_all(self) -> None:
        """Leave every counting mode still entered (the last gap; all of them on an error)."""
        while self._open:
            self._exit()


def _fit_counting_syncs(cfg) -> CountSyncs:
    counter = CountSyncs()
    trainer = build_trainer(cfg)
    trainer.state.callbacks.append(counter)  # last: its windows hold every other callback
    try:
        trainer.fit()
    finally:
        counter.close_all()
        trainer.close()
    return counter


def _six_steps_logging_every_third(tiny_corpus, tmp_path):
    return _cfg(
        tiny_corpus, tmp_path, "max_duration=6ba", "scheduler.t_warmup=1ba", "loss_log_interval=3"
    )


def test_composer_training_step_makes_no_device_sync(tiny_corpus, tmp_path):
    cfg = _six_steps_logging_every_third(tiny_corpus, tmp_path)
    counter = _fit_counting_syncs(cfg)
    assert counter.microbatches == 12  # 8 rows in microbatches of 4, six steps
    assert counter.model_step.total == 0, counter.model_step.counts
    # Over whole steps: nothing from our code (callbacks read the host layout; grad_norm reads
    # at its interval, here 10 steps). On one rank Composer's end-of-data flag and microbatch
    # weights stay on the host, so it reads only the loss it logs, on steps 3 and 6. optimi's
    # step counter is a CPU tensor and its CPU for-loop reads each parameter's update RMS (its
    # Triton path on a GPU does not); Composer's own DecoupledAdamW reads its CPU step counter
    # per parameter likewise, so neither gives a clean count on the CPU.
    for step in counter.steps:
        assert set(step.sources) <= {"composer", "optimi"}, step.sources
    composer = [step.sources["composer"] for step in counter.steps]
    assert composer == [0, 0, 1, 0, 0, 1], composer
    # Between steps (checkpoint and evaluation events, the next batch's fetch): nothing.
    gaps = [dict(gap.sources) for gap in counter.gaps[:-1]]
    assert gaps == [{}] * 5, gaps


class FailOnCudaSync(Callback):
    """CUDA's own sync detector, raising, from the end of the first step (warm-up) to the end
    of the last, except over the steps that log their loss (they read it once)."""

    def __init__(self, loss_interval: int, steps: int) -> None:
        self.loss_interval = loss_interval
        self.steps = steps
        self.checked: list[int] = []  # steps (counted from 1) run with the detector on

    def batch_start(self, state: State, logger: Logger) -> None:
        step = int(state.timestamp.batch) + 1
        if step % self.loss_interval == 0:
            torch.cuda.set_sync_debug_mode("default")
        elif step > 1:
            self.checked.append(step)

    def batch_end(self, state: State, logger: Logger) -> None:
        done = int(state.timestamp.batch)
        torch.cuda.set_sync_debug_mode("error" if done < self.steps else "default")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_steps_between_loss_logs_never_sync(tiny_corpus, tmp_path):
    """On one GPU, whole Composer steps and the fetches between them make no device sync
    except the logged loss's read (any other raises inside fit, naming the call)."""
    cfg = _six_steps_logging_every_third(tiny_corpus, tmp_path)
    detector = FailOnCudaSync(loss_interval=3, steps=6)
    trainer = build_trainer(cfg)
    trainer.state.callbacks.append(detector)
    try:
        trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        trainer.close()
    assert detector.checked == [2, 4, 5]


def _run_losses(tiny_corpus, run_dir, **recipe_keys) -> dict[int, float]:
    """Train the tiny recipe without eval or checkpoints; its logged loss per step."""
    from modernbert.train.trainer import run

    recipe = tiny_recipe(tiny_corpus, run_dir, eval_loader=None, save_folder=None, **recipe_keys)
    run(write_recipe(recipe, run_dir / "recipe.yaml"))
    return read_losses(run_dir / "metrics.jsonl")


def test_loss_logged_every_n_steps_is_that_steps_loss(tiny_corpus, tmp_path):
    losses = {
        interval: _run_losses(
            tiny_corpus,
            tmp_path / f"every{interval}",
            max_duration="7ba",
            loss_log_interval=interval,
        )
        for interval in (1, 3)
    }
    assert sorted(losses[1]) == list(range(7))
    # steps 3 and 6 (the metrics file labels a step's loss with the steps done before it);
    # step 7, not a multiple of 3, is not logged
    assert losses[3] == {2: losses[1][2], 5: losses[1][5]}


def test_loss_log_interval_below_one_is_refused(tiny_corpus, tmp_path):
    with pytest.raises(RecipeError, match="loss_log_interval: must be >= 1 step, got 0"):
        _cfg(tiny_corpus, tmp_path, "loss_log_interval=0")


def test_forward_backward_of_a_loader_batch_runs_on_the_meta_device(tiny_corpus, tmp_path):
    """A CPU `.tolist()` does not dispatch; on `meta` any read of device data fails. The
    batch's layout stays on the host, as it does when Composer moves a batch."""
    batch, model = _batch_and_model(tiny_corpus, tmp_path)
    model = model.to("meta").train()
    for part in split_flat_batch(batch, 3):
        on_meta = {k: v.to("meta") if torch.is_tensor(v) else v for k, v in part.items()}
        loss = model.loss(model(on_meta), on_meta)
        assert loss.device.type == "meta"
        loss.backward()


def test_microbatch_losses_weigh_into_the_whole_batch(tiny_corpus, tmp_path):
    batch, model = _batch_and_model(tiny_corpus, tmp_path)
    model.train()
    whole = model.loss(model(batch), batch)
    whole.backward()
    whole_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = batch["layout"].num_masked
    summed = 0.0
    parts = split_flat_batch(batch, 3)
    assert len(parts) == 3
    for part in parts:
        weight = part["layout"].num_masked / total  # Composer's loss_generating token share
        loss = model.loss(model(part), part) * weight
        loss.backward()
        summed += float(loss)
    assert summed == pytest.approx(float(whole), abs=1e-5)
    for p, g in zip(model.parameters(), whole_grads):
        torch.testing.assert_close(p.grad, g, atol=1e-5, rtol=1e-4)


def test_run_losses_do_not_depend_on_the_microbatch_size(tiny_corpus, tmp_path):
    schedule = {"name": "warmup_stable_decay", "t_warmup": "1ba", "t_decay": "0.25dur"}
    losses = {
        micro: _run_losses(
            tiny_corpus,
            tmp_path / f"micro{micro}",
            max_duration="3ba",
            scheduler=schedule,
            device_train_microbatch_size=micro,
        )
        for micro in (8, 2)
    }
    assert sorted(losses[2]) == [0, 1, 2]
    assert losses[2] == pytest.approx(losses[8], abs=2e-5)


def test_one_rank_runs_without_a_sharding_wrapper(tiny_corpus, tmp_path, capsys, monkeypatch):
    cfg = _cfg(tiny_corpus, tmp_path, "parallelism.strategy=fsdp2")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert parallelism_config_for(cfg) is None
    assert "one rank, so no fsdp2 wrapper" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parallelism_config_for(cfg) == cfg.parallelism.composer_config()
