"""Two-process DDP on the CPU (gloo) through the real launcher: `composer -n 2 main.py ...`.

Disjoint data is checked against the run itself: the per-rank batches are rebuilt for rank 0
and rank 1, they share no row, and the loss the run logged for its first step is exactly the
mean of the two ranks' losses on those batches with the seeded initial model. Any other split
(both ranks reading the same rows, one rank's rows only) would log a different loss.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import read_losses, run_composer, tiny_recipe, write_recipe

STEPS = 6


@pytest.fixture(scope="module")
def ddp_run(tiny_corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp")
    recipe = tiny_recipe(
        tiny_corpus,
        run_dir,
        max_duration=f"{STEPS}ba",
        save_interval=f"{STEPS}ba",
        device_train_microbatch_size=4,  # one microbatch per rank: loss = mean of rank losses
        eval_loader=None,
    )
    path = write_recipe(recipe, run_dir / "recipe.yaml")
    run_composer(path)
    return run_dir, path


def test_ddp_trains_with_global_batch_split_over_ranks(ddp_run):
    run_dir, _ = ddp_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    samples = {r["step"]: r["time/sample"] for r in rows if "time/sample" in r}
    assert all(samples[s + 1] - samples[s] == 8 for s in range(STEPS - 1))  # 2 ranks x 4
    losses = read_losses(run_dir / "metrics.jsonl")
    assert sorted(losses) == list(range(STEPS))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("ep*.pt"))
    assert checkpoints == [f"ep0-ba{STEPS}-rank0.pt"]  # rank 0 writes the monolithic file


def test_ranks_get_disjoint_data_and_the_run_used_it(ddp_run):
    from modernbert.data.flat import padded_rows
    from modernbert.data.loader import build_mlm_dataloader
    from modernbert.data.tokenizer import TokenSpec, load_tokenizer
    from modernbert.train.config import load_recipe
    from modernbert.train.trainer import build_model

    run_dir, path = ddp_run
    cfg = load_recipe(path, world_size=2)
    tokens = TokenSpec.from_tokenizer(load_tokenizer(cfg.tokenizer))
    batches = []
    for rank in (0, 1):
        loader = build_mlm_dataloader(
            cfg.train_loader,
            tokens,
            cfg.global_train_batch_size,
            seed=cfg.seed,
            world_size=2,
            rank=rank,
        )
        batches.append(next(iter(loader)))
    rows = [
        {tuple(r.tolist()) for r in padded_rows(b, tokens.pad_id)["input_ids"]} for b in batches
    ]
    assert len(rows[0]) == len(rows[1]) == 4
    assert not rows[0] & rows[1]

    model = build_model(cfg, tokens).eval()
    with torch.no_grad():
        rank_losses = [float(model(b).loss) for b in batches]
    # The step's loss is the mean over the masked tokens of both ranks: each rank's loss
    # weighs by its masked tokens (Composer accumulates on loss-generating tokens).
    masked = [b["layout"].num_masked for b in batches]
    logged = read_losses(run_dir / "metrics.jsonl")[0]
    expected = sum(n * loss for n, loss in zip(masked, rank_losses)) / sum(masked)
    assert logged == pytest.approx(expected, abs=1e-5)
    assert all(abs(logged - loss) > 1e-4 for loss in rank_losses)
