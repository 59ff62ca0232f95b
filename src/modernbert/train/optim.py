"""Optimizers by name (`OPTIMIZERS`), with weight decay kept off norms and biases.

Both optimizers use *fully decoupled* weight decay, as in the ModernBERT recipe: each step
multiplies a weight by `1 - weight_decay * lr / peak_lr`, so `weight_decay` is a per-step
shrink at the peak LR that follows the schedule, not a number multiplied by the LR
(`1e-5` would otherwise be negligible at `lr=8e-4`).

- `stable_adamw`: torch-optimi's StableAdamW (AdamW with Adafactor-style update clipping,
  robust without gradient clipping), `decouple_lr=True`, through the `StableAdamW` subclass
  below. Plain tensors are stepped by optimi itself. DTensor parameters
  (FSDP2 `fully_shard`) are stepped on the local shards with optimi's math and state layout;
  each parameter's clipping RMS (a mean over the *whole* parameter) comes from local sums
  summed by one all-reduce and read by one host sync per step for all parameters, where optimi
  would do both once per parameter (and fail on gloo, which has no `ReduceOp.AVG`).
- `decoupled_adamw`: Composer's DecoupledAdamW (same decay rule, plain Adam update).

Parameter groups (`filter_bias_norm_wd: true`): a parameter gets no weight decay when it has
fewer than 2 dimensions (every LayerNorm weight, including the embedding norm and the final
norm, and every bias such as the MLM decoder bias) or when its name ends in `bias`. Matrices
(linear weights and the token embeddings, which the decoder shares) are decayed. Frozen
parameters (requires_grad False) are left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optimi
import torch
import torch.distributed as dist
from composer.optim import DecoupledAdamW
from optimi.utils import HAS_TRITON as _HAS_TRITON
from optimi.utils import debias_beta
from torch.distributed.tensor import DTensor

from modernbert.train.registry import Registry

ParamGroups = list[dict[str, Any]]
OPTIMIZERS: Registry[Callable[[ParamGroups, Any], torch.optim.Optimizer]] = Registry("optimizer")


@dataclass
class OptimizerConfig:
    """The YAML `optimizer:` section (defaults: the ModernBERT paper's recipe)."""

    name: str = "stable_adamw"  # registry name: stable_adamw | decoupled_adamw
    lr: float = 8e-4  # peak learning rate (schedulers multiply it by 0..1)
    betas: tuple[float, float] = (0.9, 0.98)  # Adam moment coefficients
    eps: float = 1e-6  # Adam denominator epsilon
    weight_decay: float = 1e-5  # fully decoupled decay per step at peak LR
    filter_bias_norm_wd: bool = True  # no weight decay on norms and biases (rule above)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {list(self.betas)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def no_decay(name: str, param: torch.Tensor) -> bool:
    """The rule for parameters exempt from weight decay: norms and biases (see module doc)."""
    return param.ndim < 2 or name.endswith("bias")


def param_groups(
    model: torch.nn.Module, weight_decay: float, filter_bias_norm_wd: bool
) -> ParamGroups:
    """Split trainable parameters into a decayed and a non-decayed group (empty ones dropped)."""
    decay: list[torch.Tensor] = []
    exempt: list[torch.Tensor] = []
    for name, param in model.named_parameters():  # shared (tied) parameters appear once
        if not param.requires_grad:
            continue
        (exempt if filter_bias_norm_wd and no_decay(name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group_name": "decay"},
        {"params": exempt, "weight_decay": 0.0, "group_name": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


_OPTIMI_STEP = inspect.unwrap(optimi.StableAdamW.step)  # without torch's step-hook wrapper
_STATE_LISTS = [
    "params",
    "grads",
    "exp_avgs",
    "exp_avg_sqs",
    "eps_sqs",
    "kahan_comps",
    "mean_squares",
]
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class StableAdamW(optimi.StableAdamW):
    """optimi's StableAdamW, also for DTensor (FSDP2-sharded) parameters.

    Plain tensors are stepped by optimi itself (its kernel chosen by `_pick_optimi_kernel`).
    Once the model is sharded, the state keeps optimi's layout (`exp_avg`/`exp_avg_sq`
    DTensors like the parameters, `eps_sq`, the group's `step`), so sharded checkpoints are
    unchanged, and the step is optimi's per-tensor loop on the local shards, except that the
    clipping RMS of each parameter is its global mean: local sums, one SUM all-reduce (per
    process group; one under FSDP2) and one host transfer per step for all groups together.
    Kahan summation (bf16/fp16 parameters) is refused there.
    The class keeps optimi's name: Composer keys checkpoints and the `lr-StableAdamW/group<i>`
    metrics by it.
    """

    @torch.no_grad()
    def step(self, closure: Callable | None = None, param: torch.Tensor | None = None):
        sharded = any(isinstance(p, DTensor) for g in self.param_groups for p in g["params"])
        if not sharded:  # plain tensors (and gradient release): optimi's own step
            return _OPTIMI_STEP(self, closure, param)
        if param is not None:
            raise NotImplementedError("gradient release is not supported for DTensor params")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._sharded_step(self.param_groups)
        return loss

    def _sharded_step(self, groups: list[dict[str, Any]]) -> None:
        """optimi's `_single_param_stableadamw` on the local shards, with each parameter's
        RMS summed over its shards by one all-reduce for all the groups (a plain tensor in
        the mix is its own shard: no reduction)."""
        params = []  # with a gradient, in all the groups
        todo = []  # (group, param, exp_avg, exp_avg_sq), the last three local shards
        local_sums = []  # of grad^2 / max(exp_avg_sq, eps^2), per parameter
        for group in groups:
            low = [p for p in group["params"] if p.grad is not None and p.dtype in _LOW_PRECISION]
            if low and group["kahan_sum"] is not False:
                raise ValueError(
                    f"Kahan summation (on by default for {low[0].dtype} params) is not "
                    "supported for DTensor params: keep them in fp32 or pass kahan_sum=False"
                )
            group["triton"] = False  # no Triton scratch state: the flag is unused here
            lists: dict[str, list] = {name: [] for name in _STATE_LISTS}
            self._init_group(group, **lists)
            group["step"].add_(1)  # debiased betas, as `optimi.stableadamw.stableadamw`
            step = group["step"].item()
            beta1_comp = 1 - debias_beta(group["beta1"], step)
            beta2_hat = debias_beta(group["beta2"], step)
            beta2_comp = 1 - beta2_hat
            state = zip(lists["params"], lists["grads"], lists["exp_avgs"], lists["exp_avg_sqs"])
            for (p, grad, exp_avg, exp_avg_sq), eps_sq in zip(state, lists["eps_sqs"]):
                grad, exp_avg, exp_avg_sq, eps_sq = map(_local, (grad, exp_avg, exp_avg_sq, eps_sq))
                exp_avg.lerp_(grad, weight=beta1_comp)
                exp_avg_sq.mul_(beta2_hat).addcmul_(grad, grad, value=beta2_comp)
                ratio = grad.pow(2).div_(exp_avg_sq.maximum(eps_sq))
                local_sums.append(ratio.sum(dtype=torch.float32))
                params.append(p)
                todo.append((group, _local(p), exp_avg, exp_avg_sq))
        if not params:  # all grads None (the same on every rank under FSDP2)
            return

        sums = torch.stack(local_sums)
        by_groups: dict[tuple, list[int]] = {}  # parameters sharded over the same process groups
        for i, p in enumerate(params):
            by_groups.setdefault(_shard_process_groups(p), []).append(i)
        for pgs, index in by_groups.items():
            if pgs:
                part = sums[index]
                for pg in pgs:
                    dist.all_reduce(part, op=dist.ReduceOp.SUM, group=pg)
                sums[index] = part
        numels = torch.tensor([p.numel() for p in params], dtype=torch.float32, device=sums.device)
        rms = sums.div_(numels).sqrt_().tolist()  # the one host sync

        for (group, param, exp_avg, exp_avg_sq), rms_i in zip(todo, rms):
            lr = group["lr"] / max(1, rms_i)  # RMS stabilized learning rate
            weight_decay = group["weight_decay"]
            if weight_decay != 0:
                if group["decouple_lr"]:
                    weight_decay = 1 - (lr / group["max_lr"]) * weight_decay
                else:
                    weight_decay = 1 - lr * weight_decay
                param.mul_(weight_decay)
            param.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-lr)


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (a view: in-place updates reach it), else `t` itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def _shard_process_groups(p: torch.Tensor) -> tuple:
    """The process groups over which `p` is sharded (one per Shard mesh dimension)."""
    if not isinstance(p, DTensor):
        return ()
    if not all(pl.is_shard() or pl.is_replicate() for pl in p.placements):
        raise ValueError(f"unsupported DTensor placements for StableAdamW: {p.placements}")
    return tuple(
        p.device_mesh.get_group(dim) for dim, pl in enumerate(p.placements) if pl.is_shard()
    )


@OPTIMIZERS.register("stable_adamw", options=OptimizerConfig)
def _stable_adamw(groups: ParamGroups, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    opt = StableAdamW(
        groups,
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        decouple_lr=True,
    )
    opt.register_step_pre_hook(_pick_optimi_kernel)
    return opt


def _pick_optimi_kernel(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Choose optimi's kernel from where the parameters live, at the first step.

    torch-optimi 0.3.3 decides before it has collected a group's parameters (an empty list),
    so with Triton installed it picks its Triton kernels even for CPU tensors, which fail; its
    per-parameter rule would instead never pick Triton (it rejects `nn.Parameter`), and its
    fallback is a per-tensor loop. The choice cannot be made when the optimizer is built
    either: Composer moves the model to the GPU (and FSDP2 turns parameters into DTensors)
    afterwards. So, on the first step: Triton for plain CUDA parameters when Triton is
    importable and bf16 is supported, else foreach on CUDA, else the simple loop (CPU).
    Groups of DTensors (FSDP2) get neither: `StableAdamW` steps their local shards itself.
    """
    for group in opt.param_groups:
        if group.get("triton") is not None or group.get("foreach") is not None:
            continue  # chosen by the user or restored from a checkpoint
        params = [p for p in group["params"] if p.grad is not None]
        on_gpu = bool(params) and all(p.is_cuda for p in params)
        plain = all(type(p) in (torch.Tensor, torch.nn.Parameter) for p in params)
        group["triton"] = on_gpu and plain and _HAS_TRITON and torch.cuda.is_bf16_supported()
        group["foreach"] = on_gpu and plain and not group["triton"]


@OPTIMIZERS.register("decoupled_adamw", options=OptimizerConfig)
def _decoupled_adamw(groups: ParamGroups, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return DecoupledAdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def build_optimizer(cfg: OptimizerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by `cfg.name` over `model`'s parameter groups."""
    groups = param_groups(model, cfg.weight_decay, cfg.filter_bias_norm_wd)
    return OPTIMIZERS.get(cfg.name)(groups, cfg)
