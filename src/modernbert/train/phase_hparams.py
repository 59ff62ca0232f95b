"""A new phase that keeps the previous optimizer state still trains with its own settings.

With `init_from: {reset_optimizer: false}` Composer loads the previous phase's optimizer state
dict, and a state dict carries each parameter group's hyperparameters along with the moments:
the old phase's peak LR (`max_lr`, which scales StableAdamW's decoupled weight decay), its
`weight_decay`, betas and eps would silently replace the new recipe's. The reference configs
restart such phases with `restart_override` for this reason. `KeepRecipeHyperparameters`
notes the hyperparameters the optimizer was built with (from this recipe) and puts them back
once the checkpoint is loaded, before the first step; the moments and step counts stay loaded.
"""

from __future__ import annotations

from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger

# Group entries that are optimizer state or kernel choices, not the recipe's settings.
_NOT_SETTINGS = frozenset({"params", "step", "setup", "foreach", "triton"})


def recipe_hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's settings (LR, weight decay, betas, eps, ...), copied."""
    return [
        {k: v for k, v in group.items() if k not in _NOT_SETTINGS}
        for group in optimizer.param_groups
    ]


class KeepRecipeHyperparameters(Callback):
    """Restore the recipe's optimizer settings after a checkpoint loaded older ones."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.settings = recipe_hyperparameters(optimizer)

    def fit_start(self, state: State, logger: Logger) -> None:
        for optimizer in state.optimizers:
            if len(optimizer.param_groups) != len(self.settings):
                raise ValueError(
                    f"the loaded optimizer has {len(optimizer.param_groups)} parameter groups, "
                    f"this recipe builds {len(self.settings)}: cannot keep its state"
                )
            for group, settings in zip(optimizer.param_groups, self.settings):
                group.update(settings)
                if "initial_lr" in group:  # the scheduler's base LR, also loaded
                    group["initial_lr"] = settings["lr"]
