"""CPU end to end: a tiny recipe trains, its loss falls, it checkpoints, and the export loads
in stock transformers with the same logits as our model."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import read_losses, tiny_recipe, write_recipe


@pytest.fixture(scope="module")
def trained_run(tiny_corpus, tmp_path_factory):
    from modernbert.train.trainer import run

    run_dir = tmp_path_factory.mktemp("e2e")
    recipe = tiny_recipe(tiny_corpus, run_dir)
    path = write_recipe(recipe, run_dir / "recipe.yaml")
    run(path, ["batch_size_warmup.start_batch_size=4", "batch_size_warmup.warmup_tokens=2000"])
    return run_dir


def test_loss_falls_and_metrics_are_logged(trained_run):
    metrics = trained_run / "metrics.jsonl"
    losses = read_losses(metrics)
    assert sorted(losses) == list(range(30))
    first = sum(losses[s] for s in range(3)) / 3
    last = sum(losses[s] for s in range(27, 30)) / 3
    assert last < first - 0.5, (first, last)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    evals = [r["metrics/eval/MaskedAccuracy"] for r in rows if "metrics/eval/MaskedAccuracy" in r]
    assert len(evals) == 2  # eval_interval 15ba over 30 batches
    assert all(0.0 <= acc <= 1.0 for acc in evals)
    # batch-size warmup: the first batches are smaller than the target of 8 rows
    samples = {r["step"]: r["time/sample"] for r in rows if "time/sample" in r}
    assert samples[1] - samples[0] < 8
    assert samples[29] - samples[28] == 8


def test_checkpoints_and_run_record(trained_run):
    folder = trained_run / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    for batch in (10, 20, 30):
        assert f"ep0-ba{batch}-rank0.pt" in names
    assert (folder / "latest-rank0.pt").resolve().name == "ep0-ba30-rank0.pt"
    record = json.loads((folder / "run.json").read_text())
    assert record["model_config"]["hidden_size"] == 64


def test_export_loads_in_transformers_with_same_logits(trained_run, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from modernbert.train.checkpoint_export import export_checkpoint, model_from_checkpoint

    out = export_checkpoint(trained_run / "checkpoints", tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ours, _ = model_from_checkpoint(trained_run / "checkpoints" / "ep0-ba30-rank0.pt")
    enc = tok(["def add(a, b):\n    return a + b", "import os"], return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf(**enc).logits
        mine = ours(enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    keep = enc["attention_mask"].bool()
    torch.testing.assert_close(theirs[keep], mine[keep], atol=1e-4, rtol=1e-4)


def _next_phase(trained_run, corpus, run_dir, reset_optimizer: bool) -> dict[int, float]:
    from modernbert.train.trainer import run

    recipe = tiny_recipe(
        corpus,
        run_dir,
        max_duration="3ba",
        scheduler={"name": "warmup_stable_decay", "t_warmup": "0ba", "t_decay": "0dur"},
        init_from={
            "path": str(trained_run / "checkpoints"),
            "mode": "weights",
            "reset_optimizer": reset_optimizer,
        },
        eval_loader=None,
    )
    run(write_recipe(recipe, run_dir / "recipe.yaml"))
    log = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(log[0])["time/sample"] == 0  # the data starts from the beginning
    return read_losses(run_dir / "metrics.jsonl")


def test_next_phase_starts_from_the_weights_with_fresh_time(
    trained_run, tiny_corpus, tmp_path, capfd
):
    fresh = _next_phase(trained_run, tiny_corpus, tmp_path / "reset", reset_optimizer=True)
    assert "ep0-ba30-rank0.pt" in capfd.readouterr().out  # says where it reads from
    kept = _next_phase(trained_run, tiny_corpus, tmp_path / "kept", reset_optimizer=False)
    phase1 = read_losses(trained_run / "metrics.jsonl")
    assert sorted(fresh) == sorted(kept) == [0, 1, 2]  # time restarts
    assert fresh[0] < phase1[0] - 0.5  # but the weights are the trained ones
    # Same weights and data: the same first loss. The optimizer state kept from phase 1
    # (reset_optimizer: false) changes the first update, hence the loss of step 1.
    assert kept[0] == pytest.approx(fresh[0], abs=1e-6)
    assert kept[1] != pytest.approx(fresh[1], abs=1e-4)


def test_compiled_model_trains_like_eager(tiny_corpus, tmp_path):
    """`compile: true` goes through dynamo (varlen shapes change every batch) and gives the
    eager losses. The aot_eager backend traces the same graphs as inductor in seconds; the
    inductor default gave the same losses here but takes minutes to build on a CPU."""
    from modernbert.train.trainer import run

    losses = {}
    for compiled in (False, True):
        run_dir = tmp_path / f"compile-{compiled}"
        options = {"compile_options": {"backend": "aot_eager"}} if compiled else {}
        recipe = tiny_recipe(
            tiny_corpus, run_dir, compile=compiled, max_duration="6ba", eval_loader=None, **options
        )
        run(write_recipe(recipe, run_dir / "recipe.yaml"))
        losses[compiled] = read_losses(run_dir / "metrics.jsonl")
    assert sorted(losses[True]) == list(range(6))
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)
