"""GPU checks of the training run: one GPU runs unwrapped in bf16; FSDP1 (full and sharded
checkpoints) and FSDP2 on two GPUs, export / init_from from a sharded checkpoint (one rank
never shards). Skipped where there is no CUDA GPU, or only one for the FSDP runs."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import read_losses, run_composer, tiny_recipe, write_recipe

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
two_gpus = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="FSDP shards over ranks; one rank runs unwrapped",
)


def test_one_gpu_trains_unwrapped_in_bf16(tiny_corpus, tmp_path):
    from modernbert.train.config import load_recipe
    from modernbert.train.trainer import build_trainer

    recipe = tiny_recipe(
        tiny_corpus,
        tmp_path,
        precision="amp_bf16",
        parallelism={"strategy": "fsdp"},
        eval_loader=None,
        save_folder=None,
    )
    trainer = build_trainer(load_recipe(write_recipe(recipe, tmp_path / "recipe.yaml")))
    try:
        assert not trainer.state.fsdp_enabled
        trainer.fit()
    finally:
        trainer.close()
    losses = read_losses(tmp_path / "metrics.jsonl")
    assert sum(losses[s] for s in range(27, 30)) < sum(losses[s] for s in range(3)) - 1.0


def _fsdp_run(corpus, run_dir, state_dict_type: str, strategy: str = "fsdp", **overrides):
    recipe = tiny_recipe(
        corpus,
        run_dir,
        precision="amp_bf16",
        parallelism={"strategy": strategy, strategy: {"state_dict_type": state_dict_type}},
        **overrides,
    )
    run_composer(write_recipe(recipe, run_dir / "recipe.yaml"), ranks=2)
    return run_dir


@two_gpus
@pytest.mark.parametrize(
    ("strategy", "state_dict_type"), [("fsdp", "full"), ("fsdp", "sharded"), ("fsdp2", "sharded")]
)
def test_fsdp_bf16_trains_checkpoints_and_exports(tiny_corpus, tmp_path, strategy, state_dict_type):
    from transformers import AutoModelForMaskedLM

    from modernbert.train.checkpoint import find_checkpoint
    from modernbert.train.checkpoint_export import export_checkpoint

    run_dir = _fsdp_run(tiny_corpus, tmp_path / "run", state_dict_type, strategy)
    losses = read_losses(run_dir / "metrics.jsonl")
    assert sorted(losses) == list(range(30))
    assert sum(losses[s] for s in range(27, 30)) < sum(losses[s] for s in range(3)) - 1.0
    ckpt = find_checkpoint(run_dir / "checkpoints")
    assert ckpt.is_dir() == (state_dict_type == "sharded")
    out = export_checkpoint(run_dir / "checkpoints", tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(out)
    assert hf.config.hidden_size == 64


@two_gpus
def test_next_phase_starts_from_sharded_weights(tiny_corpus, tmp_path):
    from modernbert.train.trainer import run

    first = _fsdp_run(tiny_corpus, tmp_path / "one", "sharded")
    second_dir = tmp_path / "two"
    recipe = tiny_recipe(
        tiny_corpus,
        second_dir,
        max_duration="4ba",
        scheduler={"name": "warmup_stable_decay", "t_warmup": "1ba", "t_decay": "0dur"},
        init_from={"path": str(first / "checkpoints"), "mode": "weights"},
        eval_loader=None,
        precision="amp_bf16",
    )
    run(write_recipe(recipe, second_dir / "recipe.yaml"))
    fresh_start = read_losses(first / "metrics.jsonl")[0]
    continued = read_losses(second_dir / "metrics.jsonl")[0]
    assert continued < fresh_start - 0.5
    assert json.loads((second_dir / "checkpoints" / "run.json").read_text())["model_config"]
