"""scripts/bench.py: one entry, every benchmark a subcommand that parses and explains itself;
the loader subcommand really runs on tiny synthetic data (both forms)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modernbert.bench.cli import COMMANDS, build_parser, main

from conftest import REPO, subprocess_env

SCRIPT = REPO / "scripts" / "bench.py"


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=subprocess_env()
    )


def test_the_entry_lists_every_subcommand():
    done = _bench("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps the help lines
    for name, command in COMMANDS.items():
        assert f"{name} {command.help}" in text
    assert _bench().returncode == 2  # a subcommand is required


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert f"usage: bench.py {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["speed", "--preset", "tiny", "--repeats", "1"],
        ["loss-memory", "--tokens", "500", "--vocab", "1024", "--device", "cpu"],
        ["train-loop", "yamls/demo/pretrain.yaml", "max_duration=5ba", "--steps", "5"],
        ["train-run", "summarize", "m.jsonl", "--window", "50"],
        ["train-run", "profile", "--out", "prof", "r.yaml", "seed=3"],
        ["quality", "compare", "--seeds", "17", "--runs", "plain:model=ours"],
        ["quality", "golden", "--update"],
        ["loader", "--scale", "1e6", "--index-workers", "1"],
        ["convert", "--max-mb", "1", "--workers", "1"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_subcommand_arguments_parse(argv):
    args = build_parser(argv[0]).parse_args(argv)
    assert args.command == argv[0]


def test_a_bad_subcommand_or_value_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["benchmark"])
    assert info.value.code == 2 and "invalid choice: 'benchmark'" in capsys.readouterr().err
    assert main(["train-run", "summarize", "/nonexistent/m.jsonl", "--window", "3"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["speed", "--preset", "tiny", "--threads", "0"]) == 1
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_loader_subcommand_times_tiny_shards(tmp_path: Path):
    done = _bench(
        "loader", "--docs", "300", "--seq", "128", "--batch", "4", "--workers", "0",
        "--max-batches", "3", "--validate-hash", "on", "off", "--data", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("workers=0")]
    assert [line.split(":")[0] for line in lines] == [
        "workers=0 hash check on ",
        "workers=0 hash check off",
    ]
    assert all("3 batches of 4x128" in line and "packing efficiency" in line for line in lines)
    assert (tmp_path / "train" / "index.json").is_file()


def test_loader_scale_form_plans_in_a_child_process():
    done = _bench(
        "loader", "--scale", "20000", "--seq", "128", "--batch", "4", "--index-workers", "1",
        "--replay-windows", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20,000 docs" in done.stdout and "resume at the last batch" in done.stdout


def test_loss_memory_subcommand_measures_both_modes(capsys):
    assert main(["loss-memory", "--tokens", "300", "--vocab", "512", "--hidden", "32"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["tokens"] == 300 and figures["device"] == "cpu"
    assert figures["plain_peak_mib"] >= 0 and figures["chunked_peak_mib"] >= 0
