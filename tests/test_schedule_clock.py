"""Each batch trains with the LR of the schedule at that batch's start (not one batch late)."""

from __future__ import annotations

import json

import pytest
import torch

from modernbert.bench.golden import golden_recipe
from modernbert.train.trainer import run


def test_warmup_starts_at_the_first_batch(tmp_path):
    torch.set_num_threads(1)
    overrides = [
        "max_duration=6ba",
        "batch_size_warmup=null",
        "scheduler.t_warmup=4ba",
        "scheduler.t_decay=0dur",
        "callbacks={lr_monitor: {}}",
    ]
    run(golden_recipe(tmp_path), overrides)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lr = {
        line["step"]: line["lr-StableAdamW/group0"]
        for line in lines
        if "lr-StableAdamW/group0" in line
    }
    # the line of step s holds the LR batch s trains with: s / 4 of the peak, then the peak
    assert [lr[s] for s in range(1, 6)] == pytest.approx(
        [3e-3 * min(1, s / 4) for s in range(1, 6)]
    )
