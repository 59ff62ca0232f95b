"""Every shipped recipe loads and validates (placeholder paths allowed: validation never
touches the disk), misspelled keys fail with a hint, and the phases chain into each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modernbert.train import RecipeError
from modernbert.train.config import TrainConfig, load_recipe

YAMLS = Path(__file__).resolve().parents[1] / "yamls"
PARTS = YAMLS / "parts"  # pieces recipes inherit, not recipes themselves
ALL = sorted(p for p in YAMLS.rglob("*.yaml") if PARTS not in p.parents)
SIZES = ("base", "large")
PLACEHOLDER = "/PATH/TO/"


def _load(name: str, *overrides: str, world_size: int = 1) -> TrainConfig:
    return load_recipe(YAMLS / name, list(overrides), world_size=world_size)


def test_the_recipes_are_all_there():
    names = {p.relative_to(YAMLS).as_posix() for p in ALL}
    for size in SIZES:
        for phase in ("pretrain", "context_extension", "decay"):
            assert f"{phase}_{size}.yaml" in names
    assert {"demo/pretrain.yaml", "demo/context_extension.yaml", "demo/decay.yaml"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(YAMLS).as_posix())
def test_every_yaml_loads_and_validates(path):
    cfg = load_recipe(path, [], world_size=1)
    assert cfg.run_name
    assert "{run_name}" not in (cfg.save_folder or "")


@pytest.mark.parametrize("world_size", [8, 16, 32, 64])
def test_base_recipes_validate_on_common_gpu_counts(world_size):
    for phase in ("pretrain", "context_extension", "decay"):
        _load(f"{phase}_base.yaml", world_size=world_size)


def test_large_recipes_validate_on_the_papers_eight_gpus():
    # the paper's long-context batches of large (616 and 624 rows) suit 8 GPUs, not 16+
    for name in ("pretrain", "pretrain_large_lr_drop", "context_extension", "decay"):
        _load(f"{name}.yaml" if name.endswith("drop") else f"{name}_large.yaml", world_size=8)


@pytest.mark.parametrize("size", SIZES)
def test_cluster_paths_are_marked_placeholders(size):
    for phase in ("pretrain", "context_extension", "decay"):
        cfg = _load(f"{phase}_{size}.yaml")
        paths = [s.local for s in cfg.train_loader.streams.values()]
        paths += [cfg.save_folder, cfg.metrics_file]
        paths += [cfg.init_from.path] if cfg.init_from else []
        assert all(p.startswith(PLACEHOLDER) for p in paths), paths


@pytest.mark.parametrize("prefix", ["", "demo/"])
@pytest.mark.parametrize("size", SIZES)
def test_phases_chain_and_follow_the_recipe(prefix, size):
    suffix = "" if prefix else f"_{size}"
    pretrain = _load(f"{prefix}pretrain{suffix}.yaml")
    context = _load(f"{prefix}context_extension{suffix}.yaml")
    decay = _load(f"{prefix}decay{suffix}.yaml")
    if size == "large" and not prefix:  # large continues its pretraining at a lower LR first
        pretrain = _load("pretrain_large_lr_drop.yaml")
    assert context.init_from.path == pretrain.save_folder
    assert context.init_from.mode == decay.init_from.mode == "weights"
    assert decay.init_from.path == context.save_folder
    for cfg in (pretrain, context, decay):
        assert cfg.train_loader.mlm_probability == 0.3
        assert cfg.eval_loader.mlm_probability == 0.15
        assert cfg.model.local_rope_theta == 10_000
        assert cfg.optimizer.name == "stable_adamw" or (cfg is pretrain and prefix == "demo/")
        assert tuple(cfg.optimizer.betas) == (0.9, 0.98)
    assert pretrain.model.global_rope_theta == 10_000
    assert context.model.global_rope_theta == decay.model.global_rope_theta == 160_000
    assert context.train_loader.max_seq_len == 4 * pretrain.train_loader.max_seq_len or (
        context.train_loader.max_seq_len == 8 * pretrain.train_loader.max_seq_len
    )
    assert pretrain.batch_size_warmup is not None or pretrain.init_from is not None
    assert pretrain.scheduler.name == context.scheduler.name == "warmup_stable_decay"
    assert decay.scheduler.decay_shape == "1-sqrt"


def test_base_and_large_dimensions_and_tiling():
    base, large = _load("pretrain_base.yaml"), _load("pretrain_large.yaml")
    assert (base.model.num_hidden_layers, base.model.hidden_size) == (22, 768)
    assert (base.model.intermediate_size, base.model.num_attention_heads) == (1152, 12)
    assert (large.model.num_hidden_layers, large.model.hidden_size) == (28, 1024)
    assert (large.model.intermediate_size, large.model.num_attention_heads) == (2624, 16)
    assert base.model.vocab_size == large.model.vocab_size == 50368
    assert base.train_loader.max_seq_len == 1024
    assert base.optimizer.lr == 8e-4 and base.optimizer.eps == 1e-6
    assert base.optimizer.weight_decay == 1e-5
    assert large.init_from.mode == "tile" and large.init_from.path == base.save_folder


def test_demo_vocab_matches_the_tokenizer_demo_sh_builds():
    script = (YAMLS.parent / "scripts" / "demo.sh").read_text()
    vocab = int(re.search(r"--vocab-size (\d+)", script).group(1))
    for phase in ("pretrain", "context_extension", "decay"):
        assert _load(f"demo/{phase}.yaml").model.vocab_size == vocab


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("optimizer.lrr=1e-3", "did you mean 'lr'"),
        ("max_duraton=10ba", "did you mean 'max_duration'"),
        ("train_loader.mlm_probabilty=0.2", "did you mean 'mlm_probability'"),
        ("model.hiden_size=128", "did you mean 'hidden_size'"),
    ],
)
def test_misspelled_override_fails_with_a_hint(override, hint):
    with pytest.raises(RecipeError, match=re.escape(hint)):
        _load("demo/pretrain.yaml", override)


def test_misspelled_key_in_a_yaml_file_fails(tmp_path):
    text = (YAMLS / "demo" / "pretrain.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("global_train_batch_size:", "global_train_batch_sise:"))
    with pytest.raises(RecipeError, match="global_train_batch_sise"):
        load_recipe(bad, [], world_size=1)


def test_overrides_apply_before_validation():
    cfg = _load("demo/pretrain.yaml", "max_duration=10ba", "scheduler.t_warmup=2ba")
    assert cfg.max_duration == "10ba"
    with pytest.raises(RecipeError, match="not divisible"):
        _load("demo/pretrain.yaml", world_size=3)
