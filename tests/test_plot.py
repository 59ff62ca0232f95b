"""Training-curve plots (modernbert.metrics_plot, scripts/plot_metrics.py) on small synthetic
metrics files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modernbert import metrics_plot as plot_metrics

ROOT = Path(__file__).resolve().parents[1]


def write_run(folder: Path, steps: int, resumed_from: int | None = None) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for s in range(steps + 1):
        record = {"step": s, "tokens": 100 * s, "lr-StableAdamW/group0": 1e-3 * min(1, s / 3)}
        if s < steps:
            record["loss/train/total"] = 5.0 - 0.1 * s
        if s >= 2:
            record["throughput/tokens_per_sec"] = 1000.0 + s
        if s % 4 == 0:
            record["metrics/eval/LanguageCrossEntropy"] = 5.5 - 0.1 * s
        lines.append(json.dumps(record))
    if resumed_from is not None:  # a resume replays steps: they appear twice
        lines += lines[resumed_from:]
    path = folder / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_metrics_keeps_last_record_per_step(tmp_path):
    path = write_run(tmp_path / "a", steps=10, resumed_from=6)
    records = plot_metrics.read_metrics(path)
    assert [r["step"] for r in records] == list(range(11))
    assert plot_metrics.eval_loss_key(records) == "metrics/eval/LanguageCrossEntropy"
    assert plot_metrics.lr_key(records) == "lr-StableAdamW/group0"


def test_plot_writes_png_with_all_panels(tmp_path):
    a = write_run(tmp_path / "phase1", steps=10)
    b = write_run(tmp_path / "phase2", steps=6, resumed_from=3)
    out = tmp_path / "plots" / "curves.png"
    counts = plot_metrics.plot([a, b], out)
    assert counts == {"loss": 16, "eval_loss": 3 + 2, "lr": 18, "throughput": 9 + 5}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_cli_and_errors(tmp_path):
    path = write_run(tmp_path / "run", steps=4)
    out = tmp_path / "c.png"
    script = ROOT / "scripts" / "plot_metrics.py"
    done = subprocess.run(
        [sys.executable, str(script), str(path), "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in done.stdout and out.is_file()
    missing = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "nope.jsonl"), "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "metrics file not found" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a JSON line"):
        plot_metrics.read_metrics(bad)
