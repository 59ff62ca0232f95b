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
from modernbert.train.config import load_recipe
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
    """Counts device-reading ops from BEFORE_FORWARD to AFTER_BACKWARD of every microbatch
    (the model's forward, the loss and the backward), and over whole steps by source."""

    def __init__(self) -> None:
        self.model_step = SyncCounter()
        self.whole_step = SyncsBySource()
        self.microbatches = 0

    def batch_start(self, state: State, logger: Logger) -> None:
        self.whole_step.__enter__()

    def before_forward(self, state: State, logger: Logger) -> None:
        self.model_step.__enter__()

    def after_backward(self, state: State, logger: Logger) -> None:
        self.model_step.__exit__(None, None, None)
        self.microbatches += 1

    def batch_end(self, state: State, logger: Logger) -> None:
        self.whole_step.__exit__(None, None, None)


def test_composer_training_step_makes_no_device_sync(tiny_corpus, tmp_path):
    cfg = _cfg(tiny_corpus, tmp_path, "max_duration=3ba", "scheduler.t_warmup=1ba")
    counter = CountSyncs()
    trainer = build_trainer(cfg)
    trainer.state.callbacks.append(counter)
    try:
        trainer.fit()
    finally:
        trainer.close()
    assert counter.microbatches == 6  # 8 rows in microbatches of 4, three steps
    assert counter.model_step.total == 0, counter.model_step.counts
    # Over whole steps: nothing from our code (callbacks read the host layout; grad_norm reads
    # at its interval, here 10 steps). Composer reads the microbatch weights' total before the
    # first forward and the logged loss after the step; optimi's step counter is a CPU tensor
    # and its CPU for-loop reads each parameter's RMS (its Triton path on a GPU does not).
    sources = counter.whole_step.sources
    assert set(sources) <= {"composer", "optimi"}, sources
    assert sources["composer"] <= 2 * 3, sources


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
    from modernbert.train.trainer import run

    losses = {}
    for micro in (8, 2):
        run_dir = tmp_path / f"micro{micro}"
        recipe = tiny_recipe(
            tiny_corpus,
            run_dir,
            max_duration="3ba",
            scheduler={"name": "warmup_stable_decay", "t_warmup": "1ba", "t_decay": "0.25dur"},
            eval_loader=None,
            save_folder=None,
            device_train_microbatch_size=micro,
        )
        run(write_recipe(recipe, run_dir / "recipe.yaml"))
        losses[micro] = read_losses(run_dir / "metrics.jsonl")
    assert sorted(losses[2]) == [0, 1, 2]
    assert losses[2] == pytest.approx(losses[8], abs=2e-5)


def test_one_rank_runs_without_a_sharding_wrapper(tiny_corpus, tmp_path, capsys, monkeypatch):
    cfg = _cfg(tiny_corpus, tmp_path, "parallelism.strategy=fsdp2")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert parallelism_config_for(cfg) is None
    assert "one rank, so no fsdp2 wrapper" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parallelism_config_for(cfg) == cfg.parallelism.composer_config()
