"""FSDP2 on the CPU: two processes through the real launcher (`composer -n 2 main.py`, gloo)
with `parallelism.strategy: fsdp2`, so sharded training, sharded checkpoints, autoresume from
them, export and the next phase's `init_from` are exercised without a GPU.

The schedule is constant after warmup, so a run stopped at batch 6 and resumed to batch 12
must log exactly the losses of one uninterrupted 12-batch run. A DDP run of the same recipe
must log the same losses and gradient norms.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import read_losses, run_composer, run_main, tiny_recipe, write_recipe

STEPS = 12


def _recipe(corpus, run_dir: Path, **overrides) -> Path:
    settings = {
        "parallelism": {"strategy": "fsdp2", "fsdp2": {"state_dict_type": "sharded"}},
        "scheduler": {"name": "constant_with_warmup", "t_warmup": "4ba"},
        "max_duration": f"{STEPS}ba",
        "save_interval": "6ba",
        "device_train_microbatch_size": 4,
        "eval_loader": None,
        "autoresume": True,
        "callbacks": {"lr_monitor": {}, "grad_norm": {"interval": 1}},  # a norm every step
    }
    recipe = tiny_recipe(corpus, run_dir, **{**settings, **overrides})
    return write_recipe(recipe, run_dir / "recipe.yaml")


@pytest.fixture(scope="module")
def fsdp2_run(tiny_corpus, tmp_path_factory):
    recipe = _recipe(tiny_corpus, tmp_path_factory.mktemp("fsdp2"))
    run_composer(recipe)
    return recipe.parent


def test_fsdp2_trains_and_writes_sharded_checkpoints(fsdp2_run):
    losses = read_losses(fsdp2_run / "metrics.jsonl")
    assert sorted(losses) == list(range(STEPS))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert sum(losses[s] for s in range(9, 12)) < sum(losses[s] for s in range(3))
    for step in (6, STEPS):
        folder = fsdp2_run / "checkpoints" / f"ep0-ba{step}"
        assert sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]


def test_rerun_of_a_finished_sharded_run_says_it_is_complete(fsdp2_run):
    metrics = (fsdp2_run / "metrics.jsonl").read_text()
    done = run_composer(fsdp2_run / "recipe.yaml")  # exit 0 on both ranks, nothing trained
    assert "run tiny is complete" in done.stdout
    assert (fsdp2_run / "metrics.jsonl").read_text() == metrics


def test_fsdp2_matches_ddp_step_for_step(fsdp2_run, tiny_corpus, tmp_path):
    """Same data, same seed, two ranks: sharded weights must not change the training. This
    also pins the gradient average (gloo's reduce-scatter sums where FSDP2 asks for AVG;
    `ShardGradientAverage` corrects it) through the logged pre-clipping gradient norm."""
    recipe = _recipe(
        tiny_corpus,
        tmp_path / "ddp",
        parallelism={"strategy": "ddp"},
        save_folder=None,
        autoresume=False,
    )
    run_composer(recipe)
    for key in ("loss/train/total", "grad_norm/total"):
        ddp = read_losses(tmp_path / "ddp" / "metrics.jsonl", key)
        fsdp2 = read_losses(fsdp2_run / "metrics.jsonl", key)
        assert sorted(ddp) == sorted(fsdp2) == list(range(STEPS))
        assert [fsdp2[s] for s in range(STEPS)] == pytest.approx(
            [ddp[s] for s in range(STEPS)], rel=1e-4
        ), key


def test_fsdp2_resume_from_sharded_checkpoint_gives_the_same_losses(
    fsdp2_run, tiny_corpus, tmp_path
):
    # with activation checkpointing too: recomputing each layer in the backward must not
    # change a single loss either
    sharding = {"state_dict_type": "sharded", "activation_checkpointing": True}
    recipe = _recipe(
        tiny_corpus, tmp_path / "resumed", parallelism={"strategy": "fsdp2", "fsdp2": sharding}
    )
    run_composer(recipe, "max_duration=6ba")
    assert sorted(read_losses(tmp_path / "resumed" / "metrics.jsonl")) == list(range(6))
    run_composer(recipe)  # autoresume from ep0-ba6: model, optimizer (DTensor state), data, RNG
    resumed = read_losses(tmp_path / "resumed" / "metrics.jsonl")
    assert resumed == read_losses(fsdp2_run / "metrics.jsonl")


def test_fsdp2_sharded_checkpoint_exports_and_starts_the_next_phase(
    fsdp2_run, tiny_corpus, tmp_path
):
    from transformers import AutoModelForMaskedLM

    from modernbert.hf import from_hf
    from modernbert.train.checkpoint import read_checkpoint
    from modernbert.train.checkpoint_export import export_checkpoint

    checkpoint = fsdp2_run / "checkpoints" / f"ep0-ba{STEPS}"
    hf = AutoModelForMaskedLM.from_pretrained(export_checkpoint(checkpoint, tmp_path / "hf"))
    weights = read_checkpoint(checkpoint).model
    exported = from_hf(hf).state_dict()
    assert weights.keys() == exported.keys()
    assert all(torch.equal(weights[k], exported[k]) for k in weights)

    # the next phase, on one process, reads the two-rank sharded weights. (A subprocess: an
    # in-process Composer run keeps its streaming datasets alive until exit, and the shared
    # memory of another process's live datasets is what tests/test_loader.py's descriptor
    # probe must not see.)
    recipe = tiny_recipe(
        tiny_corpus,
        tmp_path / "next",
        init_from={"path": str(checkpoint)},
        max_duration="8ba",
        eval_loader=None,
    )
    run_main(write_recipe(recipe, tmp_path / "next" / "recipe.yaml"))
    assert sorted(read_losses(tmp_path / "next" / "metrics.jsonl")) == list(range(8))
