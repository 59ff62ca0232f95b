"""Optimizers by name (`OPTIMIZERS`), with weight decay kept off norms and biases.

Both optimizers use *fully decoupled* weight decay, as in the ModernBERT recipe: each step
multiplies a weight by `1 - weight_decay * lr / peak_lr`, so `weight_decay` is a per-step
shrink at the peak LR that follows the schedule, not a number multiplied by the LR
(`1e-5` would otherwise be negligible at `lr=8e-4`).

- `stable_adamw`: torch-optimi's StableAdamW (AdamW with Adafactor-style update clipping,
  robust without gradient clipping), `decouple_lr=True`.
- `decoupled_adamw`: Composer's DecoupledAdamW (same decay rule, plain Adam update).

Parameter groups (`filter_bias_norm_wd: true`): a parameter gets no weight decay when it has
fewer than 2 dimensions (every LayerNorm weight, including the embedding norm and the final
norm, and every bias such as the MLM decoder bias) or when its name ends in `bias`. Matrices
(linear weights and the token embeddings, which the decoder shares) are decayed. Frozen
parameters (requires_grad False) are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from composer.optim import DecoupledAdamW
from optimi import StableAdamW
from optimi.utils import HAS_TRITON as _HAS_TRITON

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
    either: Composer moves the model to the GPU afterwards. So, on the first step: Triton for
    plain CUDA parameters when Triton is importable and bf16 is supported, else foreach on
    CUDA (DTensor shards under FSDP2), else the simple loop (CPU).
    """
    for group in opt.param_groups:
        if group.get("triton") is not None or group.get("foreach") is not None:
            continue  # chosen by the user or restored from a checkpoint
        params = [p for p in group["params"] if p.grad is not None]
        on_gpu = bool(params) and all(p.is_cuda for p in params)
        plain = all(type(p) in (torch.Tensor, torch.nn.Parameter) for p in params)
        group["triton"] = on_gpu and plain and _HAS_TRITON and torch.cuda.is_bf16_supported()
        group["foreach"] = on_gpu and not group["triton"]


@OPTIMIZERS.register("decoupled_adamw", options=OptimizerConfig)
def _decoupled_adamw(groups: ParamGroups, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return DecoupledAdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def build_optimizer(cfg: OptimizerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by `cfg.name` over `model`'s parameter groups."""
    groups = param_groups(model, cfg.weight_decay, cfg.filter_bias_norm_wd)
    return OPTIMIZERS.get(cfg.name)(groups, cfg)
