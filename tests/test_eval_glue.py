"""Downstream evaluation, offline: every code path a GLUE run takes (saved datasets, pair and
single-sentence tokenisation, classification and regression heads, the MNLI start of RTE and
STS-B, metrics, report, jsonl, W&B offline) on tasks built from this machine's corpus, with a
tiny ModernBERT saved in the Hugging Face format; fine-tuning must clearly beat chance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def tiny_hf(tiny_corpus, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer ModernBERT with the tiny corpus's tokenizer."""
    import transformers

    folder = tmp_path_factory.mktemp("tiny_hf")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_corpus.tokenizer)
    config = transformers.ModernBertConfig(
        vocab_size=tiny_corpus.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        local_attention=32,
        global_attn_every_n_layers=2,
        pad_token_id=tok.pad_token_id,
        cls_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
    )
    torch.manual_seed(0)
    transformers.ModernBertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task_data(tmp_path_factory) -> Path:
    """code_prose from the standard library, plus GLUE-shaped pair tasks made from it."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from modernbert.eval.local import build_code_prose

    root = tmp_path_factory.mktemp("task_data")
    folder = build_code_prose(root, per_class=150, max_bytes=600_000, packages=("stdlib",))
    single = load_from_disk(str(folder))

    def pairs(split, n: int, label_of) -> Dataset:
        rows = split.select(range(2 * n))
        first, second = rows.select(range(n)), rows.select(range(n, 2 * n))
        labels = [label_of(a, b) for a, b in zip(first["label"], second["label"])]
        return Dataset.from_dict(
            {"a": first["text"], "b": second["text"], "label": labels, "idx": list(range(n))}
        )

    # GLUE's column names; labels: MNLI 3 classes, RTE same-kind or not, STS-B a 0-5 score
    shapes = {
        "mnli": (("premise", "hypothesis"), lambda a, b: a + b),
        "rte": (("sentence1", "sentence2"), lambda a, b: int(a == b)),
        "stsb": (("sentence1", "sentence2"), lambda a, b: 2.5 * (a + b)),
    }
    for name, ((col1, col2), label_of) in shapes.items():
        evals = (
            ("validation_matched", "validation_mismatched") if name == "mnli" else ("validation",)
        )
        splits = {"train": pairs(single["train"], 48, label_of)}
        for split in evals:
            splits[split] = pairs(single["validation"], 16, label_of)
        data = DatasetDict({k: v.rename_columns({"a": col1, "b": col2}) for k, v in splits.items()})
        data.save_to_disk(str(root / name))
    return root


def _options(model: Path, data: Path, output: Path, tasks: str, **kwargs):
    from modernbert.eval.runner import EvalOptions
    from modernbert.eval.tasks import get_tasks

    defaults = dict(lrs=(1e-3,), max_seq_len=128, progress=False)
    return EvalOptions(
        model=model,
        tasks=get_tasks(tasks),
        seeds=SEEDS,
        output=output,
        data_dir=data,
        **{**defaults, **kwargs},
    )


def test_code_prose_fine_tuning_beats_chance(tiny_hf, task_data, tmp_path):
    from modernbert.eval.runner import run_eval

    report = run_eval(
        _options(tiny_hf, task_data, tmp_path, "code_prose", lrs=(2e-3,), epochs=3, progress=True)
    )
    task = report["tasks"]["code_prose"]
    assert (
        task["splits"]["validation"]["per_seed"]
        and len(task["splits"]["validation"]["per_seed"]) == 2
    )
    assert task["score"]["mean"] > 0.65, task  # two balanced classes: chance is 0.5
    assert report["average"] == task["score"]["mean"] and report["glue_average"] is None
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["tasks"]["code_prose"]["best_lr"] == 2e-3
    table = (tmp_path / "results.md").read_text()
    assert "| code_prose | validation | accuracy |" in table and "±" in table
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/accuracy" in r]
    assert len(evals) == 3 * len(SEEDS)  # one per epoch and seed
    assert any("train/loss" in r for r in records)


def test_glue_paths_pairs_regression_and_mnli_start(tiny_hf, task_data, tmp_path, monkeypatch):
    from modernbert.eval.runner import run_eval

    monkeypatch.setenv("WANDB_MODE", "offline")
    opts = _options(
        tiny_hf, task_data, tmp_path / "out", "stsb,rte,mnli", lrs=(1e-3, 3e-4), epochs=1,
        wandb_project="modernbert-test",
    )  # fmt: skip
    assert [t.name for t in opts.tasks] == ["mnli", "stsb", "rte"]  # MNLI runs first
    report = run_eval(opts)
    tasks = report["tasks"]
    assert set(tasks["mnli"]["splits"]) == {"validation_matched", "validation_mismatched"}
    assert tasks["mnli"]["start"] == "model"
    assert tasks["rte"]["start"] == tasks["stsb"]["start"] == "mnli"
    assert set(tasks["stsb"]["splits"]["validation"]["metrics"]) == {"pearson", "spearman"}
    assert set(tasks["mnli"]["grid"]) == {"0.001", "0.0003"}
    for task in tasks.values():
        assert all(math.isfinite(v) for v in task["splits"][next(iter(task["splits"]))]["per_seed"])
    kept = sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir())
    best = tasks["mnli"]["best_lr"]
    assert kept == [f"mnli-lr{best:g}-seed{s}" for s in SEEDS]  # only the best LR's encoders
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))


def test_metrics_come_from_the_library_on_known_cases():
    from modernbert.eval.metrics import compute

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 0])  # predictions 0, 1, 1, 0: one error
    got = compute(("accuracy", "f1", "matthews"), logits, labels, 2)
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["f1"] == pytest.approx(2 / 3)  # precision 1/2, recall 1
    assert got["matthews"] == pytest.approx(1 / math.sqrt(3))  # (tp*tn - fp*fn) / sqrt(...)
    scores = torch.tensor([[0.1], [0.4], [0.35], [0.8]])
    corr = compute(("pearson", "spearman"), scores, torch.tensor([0.0, 1.0, 2.0, 3.0]), 1)
    assert corr["spearman"] == pytest.approx(0.8)
    assert 0.8 < corr["pearson"] < 1.0


def test_cli_bad_input_is_one_line(tiny_hf, tmp_path, capsys):
    from modernbert.eval.__main__ import main

    assert main(["glue", "--model", str(tiny_hf), "--tasks", "sst2,squad"]) == 2
    assert "unknown task(s) squad; valid: cola, sst2" in capsys.readouterr().err
    code = main(["glue", "--model", str(tiny_hf), "--tasks", "cola", "--data", str(tmp_path)])
    assert code == 2
    assert f"task cola: no saved dataset at {tmp_path / 'cola'}" in capsys.readouterr().err
    assert main(["glue", "--model", str(tmp_path), "--tasks", "cola"]) == 2
    assert "no config.json" in capsys.readouterr().err
