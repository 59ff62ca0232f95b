"""Run guards end to end on the tiny recipe: a diverged run stops before saving NaN weights,
a split too small for one batch fails at the door, one run per save folder, rotation keeps
the newest N across restarts, a full disk and a finished run are each one line."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modernbert.train.checkpoint import safe_torch_load
from modernbert.train.guards import SaveFolderLock

from conftest import REPO, read_losses, subprocess_env, tiny_recipe, write_recipe


def _main():
    spec = importlib.util.spec_from_file_location("main_script", REPO / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


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


def _checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ep*-ba*-rank0.pt"))


def _finite(path: Path) -> bool:
    model = safe_torch_load(path)["state"]["model"]
    return all(bool(torch.isfinite(t).all()) for t in model.values())


def test_diverged_run_stops_before_saving_nan_weights(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    recipe = _recipe(
        tiny_corpus,
        run,
        max_duration="8ba",
        save_num_checkpoints_to_keep=2,
        optimizer={"name": "stable_adamw", "lr": 1.0e6},  # NaN within a few steps
    )
    code = _main()([str(recipe)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    losses = read_losses(run / "metrics.jsonl")
    first_nan = min(step for step, loss in losses.items() if loss != loss)
    assert f"the loss is not finite from step {first_nan} on" in err
    saved = _checkpoints(run / "checkpoints")
    assert saved, "the finite checkpoints before the divergence are kept"
    assert all(_finite(run / "checkpoints" / name) for name in saved)
    assert _finite((run / "checkpoints" / "latest-rank0.pt").resolve())


def test_divergence_without_checkpoints_still_fails(tiny_corpus, tmp_path, capsys):
    recipe = _recipe(
        tiny_corpus,
        tmp_path / "run",
        max_duration="6ba",
        save_folder=None,
        autoresume=False,
        optimizer={"name": "stable_adamw", "lr": 1.0e6},
    )
    assert _main()([str(recipe)]) == 1  # checked at the end of fit, not only before saves
    assert "training diverged" in capsys.readouterr().err


def test_divergence_is_caught_at_the_check_interval_when_the_loss_is_not_logged(
    tiny_corpus, tmp_path, capsys
):
    """The guard reads its own device flag: a run that logs no loss still stops at the first
    check after the divergence, not at the end."""
    run = tmp_path / "run"
    recipe = _recipe(
        tiny_corpus,
        run,
        max_duration="12ba",
        save_folder=None,
        autoresume=False,
        nonfinite_check_interval=2,
        loss_log_interval=100,
        optimizer={"name": "stable_adamw", "lr": 1.0e6},
    )
    assert _main()([str(recipe)]) == 1
    err = capsys.readouterr().err
    found = re.search(r"not finite from step (\d+) on; stopped after (\d+) steps", err)
    assert found, err[-2000:]
    first_bad, stopped = int(found[1]), int(found[2])
    assert stopped % 2 == 0 and stopped < 12 and first_bad < stopped <= first_bad + 2
    assert read_losses(run / "metrics.jsonl") == {}  # no loss was read to catch it


def test_train_split_smaller_than_one_batch_fails_at_the_door(tiny_corpus, tmp_path):
    # A subprocess with a timeout: without the check the run spins through empty epochs.
    recipe = _recipe(tiny_corpus, tmp_path / "run", global_train_batch_size=4096)
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), str(recipe)],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "fewer than one global batch of 4096 rows" in done.stderr
    assert "Traceback" not in done.stderr


_HOLD_LOCK = """
import sys, time
from modernbert.train.guards import SaveFolderLock
lock = SaveFolderLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_run_refuses_a_save_folder_in_use(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(folder)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = _main()([str(_recipe(tiny_corpus, run))])
        err = capsys.readouterr().err
        assert code == 1 and f"save_folder {folder} is in use" in err
        assert f"pid {holder.pid}" in err
        assert not _checkpoints(folder) and not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()  # a crashed holder: the kernel drops its lock
        holder.wait()
    assert _main()([str(_recipe(tiny_corpus, run))]) == 0
    assert _checkpoints(folder) == ["ep0-ba2-rank0.pt", "ep0-ba4-rank0.pt"]


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    first = SaveFolderLock(tmp_path)
    first.acquire()
    with pytest.raises(Exception, match="is in use"):
        SaveFolderLock(tmp_path).acquire()
    first.release()
    SaveFolderLock(tmp_path).acquire()


def test_rotation_keeps_the_newest_across_restarts_and_a_finished_rerun_is_complete(
    tiny_corpus, tmp_path, capsys
):
    run = tmp_path / "run"
    keep = ["save_num_checkpoints_to_keep=2"]
    assert _main()([str(_recipe(tiny_corpus, run)), "max_duration=6ba", *keep]) == 0
    assert _main()([str(_recipe(tiny_corpus, run)), "max_duration=10ba", *keep]) == 0
    assert _checkpoints(run / "checkpoints") == ["ep0-ba10-rank0.pt", "ep0-ba8-rank0.pt"]
    capsys.readouterr()
    metrics = (run / "metrics.jsonl").read_text()
    assert _main()([str(_recipe(tiny_corpus, run)), "max_duration=10ba", *keep]) == 0
    out = capsys.readouterr().out
    assert "run tiny is complete" in out and "ep0-ba10-rank0.pt" in out
    assert (run / "metrics.jsonl").read_text() == metrics  # nothing trained, nothing logged


def test_fresh_run_into_a_folder_with_checkpoints_is_refused(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert _main()([str(_recipe(tiny_corpus, run))]) == 0
    capsys.readouterr()
    assert _main()([str(_recipe(tiny_corpus, run, autoresume=False))]) == 1
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "autoresume: true" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_one_line_naming_the_folder(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ep0-ba2-rank0.pt").symlink_to("/dev/full")  # every write: ENOSPC
    code = _main()([str(_recipe(tiny_corpus, run))])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"error: no space left on device writing a checkpoint into {folder}" in err


def test_nonfinite_flag_is_kept_without_reading_the_device(monkeypatch):
    # The per-microbatch bookkeeping must not ask the device for a number (no .item(),
    # no bool() of a tensor): only check() reads the flag, at intervals and before saves.
    from types import SimpleNamespace

    from modernbert.train.guards import NonFiniteGuard

    guard = NonFiniteGuard(check_interval=10)
    losses = [torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(2.0)]
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, _no_sync(name))
    for step, loss in enumerate(losses, start=5):
        guard.after_loss(SimpleNamespace(loss=loss, timestamp=SimpleNamespace(batch=step)), None)
    monkeypatch.undo()
    assert int(guard._first_bad) == 6  # the first non-finite step, kept on the device


def _no_sync(name: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"Tensor.{name} called: a device sync in the training step")

    return refuse
