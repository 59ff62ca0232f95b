"""A phase that keeps the previous optimizer state trains with its own LR and weight decay."""

from __future__ import annotations

import torch

from modernbert.bench.golden import golden_recipe
from modernbert.train.config import load_recipe
from modernbert.train.trainer import build_trainer, run


def test_kept_optimizer_state_gets_the_new_recipes_settings(tmp_path):
    torch.set_num_threads(1)
    recipe = golden_recipe(tmp_path)
    run(recipe, [f"save_folder={tmp_path}/ck", "save_interval=4ba", "max_duration=4ba"])
    phase2 = [
        f"init_from={{path: {tmp_path}/ck, mode: weights, reset_optimizer: false}}",
        f"save_folder={tmp_path}/ck2",
        "run_name=phase2",
        "optimizer.lr=1.0e-4",
        "optimizer.weight_decay=1.0e-3",
        "batch_size_warmup=null",
        "scheduler.t_warmup=0ba",
        "scheduler.t_decay=0dur",
        "max_duration=1ba",
    ]
    trainer = build_trainer(load_recipe(recipe, phase2))
    loaded = trainer.state.optimizers[0].param_groups
    assert loaded[0]["max_lr"] == 3e-3 and loaded[0]["weight_decay"] == 1e-5  # phase 1's
    trainer.fit()
    groups = trainer.state.optimizers[0].param_groups
    assert [g["group_name"] for g in groups] == ["decay", "no_decay"]
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0]
    assert all(g["max_lr"] == g["initial_lr"] == 1e-4 for g in groups)
    assert trainer.state.schedulers[0].base_lrs == [1e-4, 1e-4]  # the LR every batch scales
    assert int(groups[0]["step"]) == 5  # the moments and step count were kept
    trainer.close()
