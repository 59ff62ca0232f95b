"""`stable_adamw` on FSDP2 DTensor parameters (two CPU processes, gloo) steps exactly like
optimi's StableAdamW on the whole, unsharded parameters; plain parameters are stepped by
optimi itself."""

from __future__ import annotations

import copy
import traceback
from unittest import mock

import optimi
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from modernbert.train.optim import OptimizerConfig, build_optimizer, param_groups

WORLD = 2
STEPS = 5
pytestmark = pytest.mark.filterwarnings("ignore:You are using weight_decay")
CFG = OptimizerConfig(name="stable_adamw", lr=1e-2, weight_decay=1e-2)


class Net(nn.Module):
    """Odd sizes: fc1 shards 3 + 2 rows, fc2 (1 row) leaves rank 1 empty shards."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(7, 5)
        self.norm = nn.LayerNorm(5)
        self.fc2 = nn.Linear(5, 1)
        self.extra = nn.Parameter(torch.randn(3, 2))  # unused after step 1: grad None, skipped

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        out = self.fc2(torch.tanh(self.norm(self.fc1(x))))
        return out + self.extra.mean() if step < 2 else out


def reference_optimizer(model: nn.Module) -> optimi.StableAdamW:
    return optimi.StableAdamW(
        param_groups(model, CFG.weight_decay, CFG.filter_bias_norm_wd),
        lr=CFG.lr,
        betas=tuple(CFG.betas),
        eps=CFG.eps,
        weight_decay=CFG.weight_decay,
        decouple_lr=True,
        foreach=False,
        triton=False,
    )


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
    # gradients grow 4x a step, so the update RMS exceeds 1 and clipping acts
    return (model(x, step) - y).pow(2).mean() * 4.0**step


def max_rms(opt: torch.optim.Optimizer) -> float:
    """The largest clipping RMS of the step just taken (optimi's formula)."""
    return max(
        (p.grad.pow(2) / s["exp_avg_sq"].maximum(s["eps_sq"])).mean().sqrt().item()
        for p, s in opt.state.items()
        if p.grad is not None
    )


def _worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        ref = Net()
        model = copy.deepcopy(ref)
        mesh = init_device_mesh("cpu", (WORLD,))
        fully_shard(model.fc1, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = build_optimizer(CFG, model)
        ref_opt = reference_optimizer(ref)
        gen = torch.Generator().manual_seed(1)
        xs = torch.randn(STEPS, 4 * WORLD, 7, generator=gen)
        ys = torch.randn(STEPS, 4 * WORLD, 1, generator=gen)
        rms, all_reduces = [], []
        real_all_reduce = dist.all_reduce

        def counted_all_reduce(*args, **kwargs):
            all_reduces[-1] += 1
            return real_all_reduce(*args, **kwargs)

        for step in range(STEPS):
            if step == 3:  # resume from the sharded optimizer state (what DCP checkpoints hold)
                state = get_optimizer_state_dict(model, opt)
                opt = build_optimizer(CFG, model)
                set_optimizer_state_dict(model, opt, state)
            mine = slice(4 * rank, 4 * rank + 4)  # data parallel: this rank's half of the batch
            loss_of(model, xs[step, mine], ys[step, mine], step).backward()
            # the reference steps on the very same (all-gathered) gradients: only the
            # optimizers differ (FSDP2's reduction is not under test; on gloo it sums)
            for p, r in zip(model.parameters(), ref.parameters()):
                r.grad = None if p.grad is None else p.grad.full_tensor()
            all_reduces.append(0)
            with mock.patch.object(dist, "all_reduce", counted_all_reduce):
                opt.step()
            opt.zero_grad()
            ref_opt.step()
            rms.append(max_rms(ref_opt))
            ref_opt.zero_grad()
        full = {n: p.detach().full_tensor() for n, p in model.named_parameters()}
        state = {
            n: {k: v.full_tensor() for k, v in opt.state[p].items() if k.startswith("exp_avg")}
            for n, p in model.named_parameters()
            if p in opt.state
        }
        layout = {
            n: [*sorted(s), type(s["exp_avg"]).__name__, s["exp_avg"].placements == p.placements]
            for n, p in model.named_parameters()
            if (s := opt.state.get(p))
        }
        out = {
            "params": full,
            "ref_params": {n: p.detach() for n, p in ref.named_parameters()},
            "state": state,
            "ref_state": {
                n: {k: ref_opt.state[p][k] for k in ("exp_avg", "exp_avg_sq")}
                for n, p in ref.named_parameters()
                if p in ref_opt.state
            },
            "layout": layout,
            "steps": [int(g["step"]) for g in opt.param_groups],
            "kernels": [(g["triton"], g["foreach"]) for g in opt.param_groups],
            "class": type(opt).__name__,
            "rms": rms,
            "all_reduces": all_reduces,
            "local_numel": {n: p.to_local().numel() for n, p in model.named_parameters()},
        }
        bf16 = nn.Linear(4, 4).to(torch.bfloat16)  # Kahan summation would be on: refused
        fully_shard(bf16, mesh=mesh)
        bf16(torch.ones(2, 4, dtype=torch.bfloat16)).sum().backward()
        try:
            build_optimizer(CFG, bf16).step()
            out["kahan"] = "no error"
        except ValueError as err:
            out["kahan"] = str(err)
    except Exception:
        out = {"error": traceback.format_exc()}
    torch.save(out, f"{tmp}/rank{rank}.pt")  # read and checked by the tests
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("optim_sharded")
    mp.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=True)
    out = [torch.load(tmp / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]
    for rank in range(WORLD):
        assert "error" not in out[rank], f"rank {rank}:\n{out[rank]['error']}"
    return out


def test_sharded_stable_adamw_matches_unsharded_optimi(ranks):
    for out in ranks:
        assert out["class"] == "StableAdamW"  # Composer keys checkpoints and LR metrics by it
        assert max(out["rms"]) > 1.5, out["rms"]  # the update clipping did act
        assert out["all_reduces"] == [1] * STEPS  # for both groups and all their parameters
        assert out["local_numel"]["fc2.weight"] == (5 if out is ranks[0] else 0)
        assert set(out["params"]) == set(out["ref_params"])
        for name, ref in out["ref_params"].items():
            torch.testing.assert_close(
                out["params"][name], ref, atol=1e-6, rtol=0, msg=lambda m, name=name: f"{name}: {m}"
            )
        assert set(out["state"]) == set(out["ref_state"]) == set(out["params"])
        for name, ref in out["ref_state"].items():
            for key in ref:
                torch.testing.assert_close(
                    out["state"][name][key],
                    ref[key],
                    atol=1e-6,
                    rtol=1e-5,
                    msg=lambda m, name=name, key=key: f"{name} {key}: {m}",
                )


def test_sharded_state_has_optimi_layout(ranks):
    for out in ranks:
        expected = ["eps_sq", "exp_avg", "exp_avg_sq", "kahan_comp", "DTensor", True]
        assert all(layout == expected for layout in out["layout"].values()), out["layout"]
        assert out["steps"] == [STEPS, STEPS]
        assert out["kernels"] == [(False, False)] * 2


def test_sharded_kahan_summation_refused(ranks):
    for out in ranks:
        assert "Kahan summation" in out["kahan"] and "DTensor" in out["kahan"], out["kahan"]


def test_plain_parameters_step_exactly_as_optimi():
    torch.manual_seed(0)
    model = Net()
    ref = copy.deepcopy(model)
    opt, ref_opt = build_optimizer(CFG, model), reference_optimizer(ref)
    gen = torch.Generator().manual_seed(1)
    rms = []
    for step in range(STEPS):
        x, y = torch.randn(8, 7, generator=gen), torch.randn(8, 1, generator=gen)
        for m, o in ((model, opt), (ref, ref_opt)):
            loss_of(m, x, y, step).backward()
            o.step()
        rms.append(max_rms(ref_opt))
        opt.zero_grad()
        ref_opt.zero_grad()
    assert max(rms) > 1.5, rms
    for (name, p), r in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, atol=0, rtol=0, msg=lambda m, name=name: f"{name}: {m}")
