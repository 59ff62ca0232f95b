"""main.py's door: a bad recipe or a missing input ends with a one-line reason and exit
status 2, not a traceback."""

from __future__ import annotations

import importlib.util

from conftest import REPO, tiny_recipe, write_recipe


def _main():
    spec = importlib.util.spec_from_file_location("main_script", REPO / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_misspelled_key_is_named_with_a_suggestion(tiny_corpus, tmp_path, capsys):
    recipe = write_recipe(tiny_recipe(tiny_corpus, tmp_path), tmp_path / "recipe.yaml")
    assert _main()([str(recipe), "optimizer.lrr=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.lrr: unknown key (did you mean 'lr'?)" in err
    assert "Traceback" not in err


def test_missing_tokenizer_folder_is_named(tiny_corpus, tmp_path, capsys):
    recipe = write_recipe(tiny_recipe(tiny_corpus, tmp_path), tmp_path / "recipe.yaml")
    missing = tmp_path / "no_such_tokenizer"
    assert _main()([str(recipe), f"tokenizer={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert "Traceback" not in err


def test_help_and_no_arguments(capsys):
    assert _main()(["--help"]) == 0
    assert "composer main.py" in capsys.readouterr().out
    assert _main()([]) == 2


def test_special_ids_of_another_tokenizer_are_one_line(tiny_corpus, tmp_path, capsys):
    recipe = write_recipe(tiny_recipe(tiny_corpus, tmp_path), tmp_path / "recipe.yaml")
    wrong = tiny_corpus.special_ids["pad_token_id"] + 7
    assert _main()([str(recipe), f"model.pad_token_id={wrong}"]) == 2
    err = capsys.readouterr().err
    assert f"model.pad_token_id={wrong} but the tokenizer's is" in err
    assert "Traceback" not in err
