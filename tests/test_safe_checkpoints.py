"""Checkpoints are read safely on every path that reads one, and a bad one is named in one
line: a malicious pickle never runs (load_path, autoresume, init_from with and without
reset_optimizer, export), a truncated latest checkpoint makes autoresume fall back to the
previous intact one, and a checkpoint of another model shape is refused before Composer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from conftest import REPO, read_losses, tiny_recipe, write_recipe


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main():
    return _load_script(REPO / "main.py", "main_script").main


def _recipe(corpus, run_dir: Path, **overrides) -> Path:
    base = {
        "max_duration": "4ba",
        "save_interval": "2ba",
        "eval_loader": None,
        "autoresume": True,
        "loggers": {"jsonl": {}, "console": {}},  # no progress bar: capsys has no terminal
        "scheduler": {"name": "constant_with_warmup", "t_warmup": "1ba"},
    }
    return write_recipe(tiny_recipe(corpus, run_dir, **{**base, **overrides}), run_dir / "r.yaml")


class _TouchOnLoad:
    """Unpickling this creates a file: the stand-in for a checkpoint that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    run = tmp_path_factory.mktemp("trained")
    assert _main()([str(_recipe(tiny_corpus, run))]) == 0
    return run


@pytest.fixture
def malicious(trained, tmp_path) -> tuple[Path, Path]:
    """A real checkpoint plus one object whose unpickling would create `marker`."""
    marker = tmp_path / "pwned"
    contents = torch.load(trained / "checkpoints" / "ep0-ba2-rank0.pt", weights_only=False)
    contents["state"]["integrations"] = {"payload": _TouchOnLoad(marker)}
    path = tmp_path / "evil" / "ep0-ba2-rank0.pt"
    path.parent.mkdir()
    torch.save(contents, path)
    return path, marker


def _refused(capsys, code: int, evil: Path) -> None:
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: checkpoint ") and str(evil) in err and "allowlist" in err
    assert "Traceback" not in err


def test_malicious_load_path_never_runs(tiny_corpus, malicious, tmp_path, capsys):
    evil, marker = malicious
    recipe = _recipe(tiny_corpus, tmp_path / "run", autoresume=False)
    code = _main()([str(recipe), f"load_path={evil}"])
    assert not marker.exists()
    _refused(capsys, code, evil)


def test_malicious_checkpoint_in_the_save_folder_never_runs(
    tiny_corpus, malicious, tmp_path, capsys
):
    evil, marker = malicious
    folder = evil.parent  # ep0-ba2-rank0.pt, and the latest link Composer would follow
    (folder / "latest-rank0.pt").symlink_to(evil.name)
    recipe = _recipe(tiny_corpus, tmp_path / "run", save_folder=str(folder))
    code = _main()([str(recipe)])
    assert not marker.exists()
    _refused(capsys, code, evil)


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_malicious_init_from_never_runs(tiny_corpus, malicious, tmp_path, capsys, reset_optimizer):
    evil, marker = malicious
    init = {"path": str(evil), "mode": "weights", "reset_optimizer": reset_optimizer}
    recipe = _recipe(tiny_corpus, tmp_path / "run", init_from=init)
    code = _main()([str(recipe)])
    assert not marker.exists()
    _refused(capsys, code, evil)


def test_malicious_checkpoint_export_never_runs(malicious, tmp_path):
    evil, marker = malicious
    export = _load_script(REPO / "scripts" / "export_hf.py", "export_hf").main
    with pytest.raises(ValueError, match="allowlist"):
        export(["--checkpoint", str(evil), "--output", str(tmp_path / "hf")])
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(
    tiny_corpus, trained, tmp_path, capsys
):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("ep0-ba2-rank0.pt", "ep0-ba4-rank0.pt", "run.json"):
        (run / "checkpoints" / name).write_bytes((trained / "checkpoints" / name).read_bytes())
    (run / "checkpoints" / "latest-rank0.pt").symlink_to("ep0-ba4-rank0.pt")
    latest = run / "checkpoints" / "ep0-ba4-rank0.pt"
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 2)
    recipe = _recipe(tiny_corpus, run, max_duration="6ba")
    assert _main()([str(recipe)]) == 0
    out = capsys.readouterr().out
    assert f"skipping checkpoint {latest} is truncated or corrupt" in out
    assert "resuming from" in out and "ep0-ba2-rank0.pt" in out
    steps = read_losses(run / "metrics.jsonl")
    assert sorted(steps) == [2, 3, 4, 5]  # (0-based) resumed after 2 steps, trained on to 6
    first = read_losses(trained / "metrics.jsonl")
    assert steps[2] == pytest.approx(first[2]) and steps[3] == pytest.approx(first[3])


def test_resuming_with_another_model_shape_is_one_line(tiny_corpus, trained, tmp_path, capsys):
    recipe = _recipe(tiny_corpus, tmp_path / "run", autoresume=False, max_duration="6ba")
    ckpt = trained / "checkpoints" / "ep0-ba4-rank0.pt"
    code = _main()([str(recipe), f"load_path={ckpt}", "model.intermediate_size=96"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"checkpoint {ckpt} was saved by a different model" in err
    assert "(128, 64) vs (192, 64)" in err or "vs (192" in err
