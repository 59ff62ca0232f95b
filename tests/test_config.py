"""The typed recipe: YAML + overrides -> TrainConfig, and every way a recipe can be wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from modernbert.data.config import MLMLoaderConfig, StreamConfig
from modernbert.model import ModernBertConfig
from modernbert.train.callbacks import GradNormConfig, NoOptions, SpeedMonitorConfig
from modernbert.train.config import (
    FSDPConfig,
    TrainConfig,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)
from modernbert.train.loggers import ConsoleConfig, WandBConfig
from modernbert.train.optim import OptimizerConfig
from modernbert.train.schedulers import CosineWithWarmupConfig, WarmupStableDecayConfig
from modernbert.train.typed_yaml import RecipeError
from modernbert.train.validate import check_tokenizer_vocab, validate_recipe

TINY_MODEL = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "local_attention": 16,
    "max_position_embeddings": 256,
    "pad_token_id": 0,
    "cls_token_id": 1,
    "sep_token_id": 2,
    "mask_token_id": 3,
}

RECIPE = {
    "run_name": "tiny",
    "tokenizer": "out/tokenizer",
    "model": TINY_MODEL,
    "train_loader": {
        "streams": {
            "code": {"local": "out/mds", "proportion": 0.5},
            "text": {"local": "out/text", "proportion": 0.5},
        },
        "max_seq_len": 128,
        "mlm_probability": 0.3,
    },
    "eval_loader": {
        "streams": {"code": {"local": "out/mds"}},
        "split": "val",
        "max_seq_len": 128,
        "mlm_probability": 0.15,
        "shuffle": False,
    },
    "global_train_batch_size": 32,
    "device_train_microbatch_size": 16,
    "batch_size_warmup": {"start_batch_size": 8, "warmup_tokens": 200_000},
    "optimizer": {"name": "stable_adamw", "lr": 8e-4, "betas": [0.9, 0.98]},
    "scheduler": {
        "name": "warmup_stable_decay",
        "t_warmup": "3_000tok",
        "t_decay": "0.1dur",
        "decay_shape": "1-sqrt",
    },
    "max_duration": "1_000_000tok",
    "precision": "fp32",
    "max_grad_norm": 1.0,
    "parallelism": {"strategy": "ddp"},
    "callbacks": {"speed_monitor": {"window_size": 5}, "lr_monitor": {}, "grad_norm": {}},
    "loggers": {"jsonl": {}, "console": {"interval": "5ba"}, "wandb": {"tags": ["a"]}},
    "save_folder": "runs/${run_name}/checkpoints",
    "metrics_file": "runs/${run_name}/metrics.jsonl",
}


def write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(recipe)))
    return path


def problems_of(tmp_path: Path, recipe: dict, overrides=(), world_size: int = 1) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, recipe), list(overrides), world_size=world_size)
    return str(info.value)


def test_load_recipe_builds_typed_config(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), world_size=1)
    assert isinstance(cfg, TrainConfig)
    assert isinstance(cfg.model, ModernBertConfig) and cfg.model.hidden_size == 64
    assert isinstance(cfg.train_loader, MLMLoaderConfig)
    assert isinstance(cfg.train_loader.streams["code"], StreamConfig)
    assert cfg.train_loader.streams["text"].proportion == 0.5
    assert cfg.eval_loader.shuffle is False and cfg.eval_loader.split == "val"
    assert cfg.batch_size_warmup.warmup_tokens == 200_000
    assert cfg.optimizer == OptimizerConfig(lr=8e-4, betas=(0.9, 0.98))
    assert cfg.scheduler == WarmupStableDecayConfig(
        "warmup_stable_decay", "3_000tok", "0.1dur", "1-sqrt", 0.0
    )
    assert cfg.callbacks == {
        "speed_monitor": SpeedMonitorConfig(window_size=5),
        "lr_monitor": NoOptions(),
        "grad_norm": GradNormConfig(),
    }
    assert cfg.loggers["console"] == ConsoleConfig("5ba")
    assert cfg.loggers["wandb"] == WandBConfig(tags=["a"])
    # ${run_name} interpolated; defaults come from the dataclasses
    assert cfg.save_folder == "runs/tiny/checkpoints"
    assert cfg.metrics_file == "runs/tiny/metrics.jsonl"
    assert cfg.seed == 17 and cfg.autoresume is False and cfg.eval_batch_size == 32


def test_defaults_interpolate_the_run_name(tmp_path):
    recipe = {k: v for k, v in RECIPE.items() if k not in ("save_folder", "metrics_file")}
    cfg = load_recipe(write(tmp_path, recipe), ["run_name=other"], world_size=1)
    assert cfg.save_folder == "runs/other/checkpoints"
    assert cfg.metrics_file == "runs/other/metrics.jsonl"


def test_the_old_run_name_form_is_refused_with_the_new_one(tmp_path):
    recipe = {
        **RECIPE,
        "save_folder": "runs/{run_name}/checkpoints",
        "loggers": {"wandb": {"group": "{run_name}-group", "tags": ["a", "{run_name}"]}},
    }
    message = problems_of(tmp_path, recipe)
    assert "loggers.wandb.tags[1]: '{run_name}' is not replaced" in message
    assert "save_folder: '{run_name}' is not replaced; write '${run_name}'" in message
    assert "loggers.wandb.group: '{run_name}' is not replaced" in message


def test_overrides_are_merged_before_conversion(tmp_path):
    cfg = load_recipe(
        write(tmp_path, RECIPE),
        [
            "run_name=other",
            "optimizer.lr=1e-3",
            "model.num_hidden_layers=4",
            "train_loader.streams.code.proportion=0.25",
            "device_train_microbatch_size=2",
            "scheduler.name=cosine_with_warmup",
            "scheduler.t_decay=null",
            "scheduler.decay_shape=null",
            "callbacks.lr_monitor=null",  # null switches a component off
            "parallelism.strategy=fsdp",
            "parallelism.fsdp.state_dict_type=sharded",
        ],
        world_size=1,
    )
    assert cfg.optimizer.lr == 1e-3 and cfg.model.num_hidden_layers == 4
    assert cfg.train_loader.streams["code"].proportion == 0.25
    assert cfg.device_train_microbatch_size == 2
    assert cfg.save_folder == "runs/other/checkpoints"
    assert "lr_monitor" not in cfg.callbacks


def test_null_scheduler_keys_are_rejected_for_other_scheduler(tmp_path):
    # keys of one scheduler are unknown to another: a switch must drop or null them
    text = problems_of(tmp_path, RECIPE, ["scheduler.name=cosine_with_warmup"])
    assert "scheduler.t_decay: unknown key" in text
    assert "scheduler.decay_shape: unknown key" in text


def test_cosine_scheduler_options(tmp_path):
    recipe = copy.deepcopy(RECIPE)
    recipe["scheduler"] = {"name": "cosine_with_warmup", "t_warmup": "0.05dur", "alpha_f": 0.1}
    cfg = load_recipe(write(tmp_path, recipe), world_size=1)
    assert cfg.scheduler == CosineWithWarmupConfig("cosine_with_warmup", "0.05dur", "1dur", 0.1)


def test_parallelism_becomes_composers_config(tmp_path):
    from composer.utils.parallelism import FSDP2Config as ComposerFSDP2Config

    def composer_config(parallelism):
        recipe = copy.deepcopy(RECIPE)
        recipe["parallelism"] = parallelism
        return load_recipe(write(tmp_path, recipe), world_size=1).parallelism.composer_config()

    assert composer_config({"strategy": "ddp"}) is None
    fsdp = composer_config({"strategy": "fsdp"})["fsdp"]
    assert fsdp == FSDPConfig().to_composer() and fsdp["sharding_strategy"] == "FULL_SHARD"
    fsdp2 = composer_config({"strategy": "fsdp2", "fsdp2": {"reshard_after_forward": False}})
    assert isinstance(fsdp2["fsdp"], ComposerFSDP2Config)
    assert fsdp2["fsdp"].reshard_after_forward is False
    assert fsdp2["fsdp"].state_dict_type == "sharded"


@pytest.mark.parametrize(
    ("strategy", "section"),
    [("ddp", "fsdp"), ("ddp", "fsdp2"), ("fsdp", "fsdp2"), ("fsdp2", "fsdp")],
)
def test_sharding_options_only_under_their_strategy(tmp_path, strategy, section):
    recipe = copy.deepcopy(RECIPE)
    recipe["parallelism"] = {"strategy": strategy, section: {}}
    assert f"parallelism.{section}: options given with parallelism.strategy '{strategy}'" in (
        problems_of(tmp_path, recipe)
    )


def test_unknown_keys_name_the_full_path_and_suggest(tmp_path):
    recipe = copy.deepcopy(RECIPE)
    recipe["train_loader"]["streams"]["code"]["proportoin"] = 0.3
    recipe["optimizr"] = {}
    recipe["model"]["hiden_size"] = 32
    recipe["loggers"]["wandb"]["projct"] = "x"
    text = problems_of(tmp_path, recipe)
    assert "train_loader.streams.code.proportoin: unknown key (did you mean 'proportion'?)" in text
    assert "optimizr: unknown key (did you mean 'optimizer'?)" in text
    assert "model.hiden_size: unknown key (did you mean 'hidden_size'?)" in text
    assert "loggers.wandb.projct: unknown key (did you mean 'project'?)" in text
    assert "4 problem(s)" in text  # all of them at once


def test_unknown_component_names_list_valid_ones(tmp_path):
    text = problems_of(
        tmp_path,
        RECIPE,
        ["optimizer.name=stable_adam", "callbacks.speed_monitr={}", "loggers.tensorboard={}"],
    )
    assert "optimizer.name: unknown optimizer 'stable_adam' (did you mean 'stable_adamw'?)" in text
    assert "valid names: decoupled_adamw, stable_adamw" in text
    assert "callbacks.speed_monitr: unknown callback 'speed_monitr' (did you mean" in text
    assert "loggers.tensorboard: unknown logger 'tensorboard'" in text
    text = problems_of(tmp_path, RECIPE, ["scheduler.name=wsd"])
    assert "scheduler.name: unknown scheduler 'wsd'" in text and "warmup_stable_decay" in text


def test_wrong_types_are_reported(tmp_path):
    text = problems_of(
        tmp_path,
        RECIPE,
        [
            "global_train_batch_size=lots",  # str for int
            "seed=1.5",  # float for int
            "compile=1",  # int for bool
            "train_loader.max_seq_len=true",  # bool for int
            "optimizer.betas=[0.9]",  # wrong tuple length
            "device_train_microbatch_size=big",  # neither int nor "auto"
            "precision=bf16",  # Literal
            "scheduler.t_warmup=soon",  # unparsable time string
            "max_duration=100",  # a bare number is ambiguous
            "save_interval=0.5dur",  # dur is not an interval
        ],
    )
    assert "global_train_batch_size: expected int, got str 'lots'" in text
    assert "seed: expected int, got float 1.5" in text
    assert "compile: expected bool, got int 1" in text
    assert "train_loader.max_seq_len: expected int, got bool True" in text
    assert "optimizer.betas: expected 2 items, got 1" in text
    assert "device_train_microbatch_size: expected int | 'auto' | null, got str 'big'" in text
    assert "precision: invalid value 'bf16'" in text and "'amp_bf16'" in text
    assert "scheduler.t_warmup: unparsable time string 'soon'" in text
    assert "max_duration: expected a time string" in text
    assert "save_interval: time '0.5dur' must use one of the units" in text


def test_ints_are_accepted_for_floats(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), ["optimizer.lr=1", "max_grad_norm=2"], world_size=1)
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.max_grad_norm == 2.0 and isinstance(cfg.max_grad_norm, float)


def test_missing_required_values(tmp_path):
    recipe = copy.deepcopy(RECIPE)
    del recipe["run_name"]
    del recipe["train_loader"]["streams"]["code"]["local"]
    del recipe["scheduler"]["t_warmup"]
    text = problems_of(tmp_path, recipe)
    assert "run_name: missing required value (str)" in text
    assert "train_loader.streams.code.local: missing required value (str)" in text
    assert "scheduler.t_warmup: missing required value (str)" in text
    text = problems_of(tmp_path, RECIPE, ["tokenizer=null"])
    assert "tokenizer: missing (required unless init_from.hf)" in text


def test_dataclass_post_init_errors_carry_the_path(tmp_path):
    text = problems_of(tmp_path, RECIPE, ["model.hidden_size=65", "optimizer.lr=-1"])
    assert "model: " in text and "hidden_size" in text
    assert "optimizer: lr must be > 0" in text


@pytest.mark.parametrize(
    ("overrides", "world_size", "expected"),
    [
        ([], 3, "global_train_batch_size: 32 is not divisible by the world size 3"),
        (["global_eval_batch_size=30"], 4, "global_eval_batch_size: 30 is not divisible"),
        (["device_train_microbatch_size=5"], 2, "device batch 16 (global_train_batch_size 32"),
        (["train_loader.max_seq_len=512"], 1, "train_loader.max_seq_len: 512 is above model."),
        (["eval_loader.max_seq_len=300"], 1, "eval_loader.max_seq_len: 300 is above model."),
        (["model.local_attention=200"], 1, "model.local_attention: window 200 is larger than"),
        (["eval_loader.mlm_probability=1.0"], 1, "eval_loader.mlm_probability: 1.0 is outside"),
        (["eval_loader.mlm_probability=0.0"], 1, "eval_loader.mlm_probability: 0.0 is outside"),
        (["scheduler.t_decay=10ba"], 1, "scheduler.t_decay: '10ba' must use the unit of max_"),
        (["scheduler.t_decay=2_000_000tok"], 1, "is longer than max_duration"),
        (["scheduler.t_warmup=0.95dur"], 1, "warmup and decay would overlap"),
        (["scheduler.alpha_f=2"], 1, "scheduler.alpha_f: 2.0 is outside [0, 1]"),
        (["parallelism.fsdp.cpu_offload=true"], 1, "parallelism.fsdp: options given with"),
        (["autoresume=true", "save_folder=null"], 1, "autoresume: needs save_folder"),
        (["device_train_microbatch_size=auto"], 1, "'auto' is not supported with the MLM loader"),
        (["load_path=a", "init_from.path=b"], 1, "load_path and init_from are both set"),
        (
            ["init_from.path=b", "init_from.mode=tile", "init_from.reset_optimizer=false"],
            1,
            "init_from.reset_optimizer: must be true with mode 'tile'",
        ),
        (["batch_size_warmup.start_batch_size=64"], 1, "start_batch_size: 64 is larger than"),
        (["max_grad_norm=0"], 1, "max_grad_norm: must be > 0 or null"),
        (["eval_subset_num_batches=0"], 1, "eval_subset_num_batches: must be > 0 or -1"),
        (["metrics_file=null"], 1, "loggers.jsonl: needs metrics_file"),
        (["max_duration=0ba"], 1, "max_duration: must be > 0"),
    ],
)
def test_impossible_combinations(tmp_path, overrides, world_size, expected):
    assert expected in problems_of(tmp_path, RECIPE, overrides, world_size)


def test_all_combination_problems_reported_together(tmp_path):
    text = problems_of(
        tmp_path,
        RECIPE,
        ["device_train_microbatch_size=5", "model.local_attention=200", "max_grad_norm=0"],
    )
    assert "4 problem(s)" in text  # the window is too large for both loaders


def test_cosine_and_constant_warmup_units(tmp_path):
    recipe = copy.deepcopy(RECIPE)
    recipe["scheduler"] = {"name": "cosine_with_warmup", "t_warmup": "10ba"}
    assert "scheduler.t_warmup: '10ba' must use the unit of t_max" in problems_of(tmp_path, recipe)
    recipe["scheduler"] = {"name": "cosine_with_warmup", "t_warmup": "10tok", "t_max": "10tok"}
    assert "scheduler.t_max: '10tok' is shorter than max_duration" in problems_of(tmp_path, recipe)
    recipe["scheduler"] = {"name": "constant_with_warmup", "t_warmup": "10sp"}
    assert "scheduler.t_warmup: '10sp' must use the unit" in problems_of(tmp_path, recipe)
    recipe["scheduler"] = {"name": "constant_with_warmup", "t_warmup": "10tok"}
    load_recipe(write(tmp_path, recipe), world_size=1)


def test_world_size_defaults_to_launcher_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(RecipeError, match="not divisible by the world size 3"):
        load_recipe(write(tmp_path, RECIPE))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert load_recipe(write(tmp_path, RECIPE)).global_train_batch_size == 32


def test_file_and_syntax_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_name: [unclosed\n")
    with pytest.raises(RecipeError, match="cannot parse YAML"):
        load_recipe(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(listed)
    with pytest.raises(RecipeError, match="override 'seed' is not of the form key=value"):
        load_recipe(write(tmp_path, RECIPE), ["seed"])


def test_recipe_round_trips_through_plain_data(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), world_size=1)
    data = recipe_to_dict(cfg)
    assert data["scheduler"]["decay_shape"] == "1-sqrt" and data["callbacks"]["lr_monitor"] == {}
    assert recipe_from_dict(OmegaConf.to_container(OmegaConf.create(data))) == cfg


def test_validate_recipe_direct_and_tokenizer_vocab(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), world_size=1)
    validate_recipe(cfg, world_size=2)
    with pytest.raises(RecipeError, match="world_size must be >= 1"):
        validate_recipe(cfg, world_size=0)
    check_tokenizer_vocab(cfg.model, 512)
    with pytest.raises(RecipeError, match=r"model.vocab_size \(512\) is smaller than .* \(600"):
        check_tokenizer_vocab(cfg.model, 600)


def test_compile_options_reach_torch_compile(tmp_path):
    from modernbert.train.trainer import compile_config_for

    recipe = copy.deepcopy(RECIPE)
    assert compile_config_for(load_recipe(write(tmp_path, recipe), world_size=1)) is None
    recipe["compile"] = True
    assert compile_config_for(load_recipe(write(tmp_path, recipe), world_size=1)) == {
        "backend": "inductor",
        "fullgraph": False,
    }
    recipe["compile_options"] = {"mode": "max-autotune", "dynamic": True}
    assert compile_config_for(load_recipe(write(tmp_path, recipe), world_size=1)) == {
        "backend": "inductor",
        "mode": "max-autotune",
        "dynamic": True,
        "fullgraph": False,
    }
    recipe["compile"] = False
    assert "compile_options: given with compile false" in problems_of(tmp_path, recipe)
