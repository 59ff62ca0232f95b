"""Recipes composed with `inherit:`, model sizes by name, `${run_name}` interpolation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modernbert.train import RecipeError
from modernbert.train.compose import model_sizes
from modernbert.train.config import load_recipe

DEMO = Path(__file__).resolve().parents[1] / "yamls" / "demo" / "pretrain.yaml"


def _split_demo(tmp_path: Path, recipe_tail: str) -> Path:
    """The demo recipe cut into a common part and a recipe that inherits it."""
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "common.yaml").write_text(DEMO.read_text())
    path = tmp_path / "recipe.yaml"
    path.write_text("inherit: [parts/common.yaml]\n" + recipe_tail)
    return path


def test_inherited_part_is_merged_under_the_recipe(tmp_path):
    path = _split_demo(tmp_path, "run_name: mine\noptimizer: {lr: 1.0e-4}\n")
    cfg = load_recipe(path)
    demo = load_recipe(DEMO)
    assert cfg.run_name == "mine" and cfg.optimizer.lr == 1e-4
    assert cfg.optimizer.betas == demo.optimizer.betas  # the rest of the section is kept
    assert cfg.model == demo.model


def test_run_name_interpolation_follows_overrides(tmp_path):
    path = _split_demo(tmp_path, "save_folder: out/${run_name}/ckpt\n")
    cfg = load_recipe(path, ["run_name=other"])
    assert cfg.save_folder == "out/other/ckpt"


def test_size_comes_from_the_table_and_explicit_keys_win(tmp_path):
    path = _split_demo(tmp_path, "model: {size: base, num_hidden_layers: 2}\n")
    cfg = load_recipe(path, ["train_loader.max_seq_len=128"])
    base = model_sizes()["base"]
    assert cfg.model.hidden_size == base["hidden_size"] == 768
    assert cfg.model.num_hidden_layers == 2


def test_unknown_size_names_the_valid_ones(tmp_path):
    path = _split_demo(tmp_path, "")
    with pytest.raises(RecipeError, match=re.escape("did you mean 'large'")):
        load_recipe(path, ["model.size=lage"])


def test_misspelled_key_in_an_inherited_part_still_fails(tmp_path):
    path = _split_demo(tmp_path, "")
    part = tmp_path / "parts" / "common.yaml"
    part.write_text(part.read_text().replace("eval_interval:", "eval_intervall:"))
    with pytest.raises(RecipeError, match=re.escape("did you mean 'eval_interval'")):
        load_recipe(path)


def test_inherit_cycle_and_missing_part_fail_clearly(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\n")
    (tmp_path / "b.yaml").write_text("inherit: [a.yaml]\n")
    with pytest.raises(RecipeError, match=re.escape("inherit cycle a.yaml -> b.yaml -> a.yaml")):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("inherit: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.yaml (inherited by")):
        load_recipe(tmp_path / "c.yaml")
