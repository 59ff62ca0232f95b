"""Correct FSDP2's gradient average where the process group's reduce-scatter cannot average.

FSDP2 reduce-scatters fp32/bf16 gradients with `ReduceOp.AVG`. NCCL averages; gloo in torch
2.7 sums instead (two ranks give twice the DDP gradient; docs/benchmarks.md, "Figures behind
code choices"). `ShardGradientAverage` probes what the reduce-scatter really does once at
fit start, on the default group, and when it summed it divides the sharded (DTensor)
gradients by the world size after the backward passes, before clipping and the optimizer
step. Where AVG works (NCCL) it does nothing. Plain-tensor gradients (DDP, FSDP1) are left
alone: they are reduced by other collectives.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from composer.core import Callback, State
from composer.loggers import Logger


def reduce_scatter_average_factor(device: torch.device) -> float:
    """What an AVG reduce-scatter on the default group returns, as a multiple of the mean
    (1.0 where it averages, the world size where it sums)."""
    world = torch_dist.get_world_size()
    rank_values = torch.full((world,), float(torch_dist.get_rank() + 1), device=device)
    out = torch.empty(1, device=device)
    torch_dist.reduce_scatter_tensor(out, rank_values, op=torch_dist.ReduceOp.AVG)
    mean = (world + 1) / 2
    return float(out.item()) / mean


class ShardGradientAverage(Callback):
    """Divides DTensor gradients by the factor their reduce-scatter overshot the mean by."""

    def __init__(self) -> None:
        self.factor = 1.0

    def fit_start(self, state: State, logger: Logger) -> None:
        if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
            return
        self.factor = reduce_scatter_average_factor(
            state.device.tensor_to_device(torch.zeros(1)).device
        )

    def after_train_batch(self, state: State, logger: Logger) -> None:
        if self.factor == 1.0:
            return
        for param in state.model.parameters():
            if param.grad is not None and hasattr(param.grad, "to_local"):
                param.grad.to_local().div_(self.factor)
