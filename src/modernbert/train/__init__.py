"""Training: YAML recipe -> typed config -> Composer Trainer (the only layer that knows Composer).

Part 1 (configuration and components):
    config.py      TrainConfig dataclasses, `load_recipe(path, overrides)`
    typed_yaml.py  generic YAML -> dataclass converter, RecipeError
    validate.py    `validate_recipe(cfg, world_size)`, `check_tokenizer_vocab`
    registry.py    name -> builder registries
    optim.py       OPTIMIZERS, `build_optimizer` (StableAdamW, DecoupledAdamW)
    schedulers.py  SCHEDULERS, `build_scheduler` (warmup-stable-decay, cosine, constant)
    callbacks.py   CALLBACKS, `build_callbacks` (throughput/MFU, LR, grad norm + clipping, ...)
    loggers.py     LOGGERS, `build_loggers` (jsonl, wandb, console)
"""

from modernbert.train.callbacks import build_callbacks
from modernbert.train.config import TrainConfig, load_recipe, recipe_to_dict
from modernbert.train.loggers import build_loggers
from modernbert.train.optim import build_optimizer
from modernbert.train.registry import Registry
from modernbert.train.schedulers import build_scheduler
from modernbert.train.typed_yaml import RecipeError
from modernbert.train.validate import check_tokenizer_vocab, validate_recipe

__all__ = [
    "RecipeError",
    "Registry",
    "TrainConfig",
    "build_callbacks",
    "build_loggers",
    "build_optimizer",
    "build_scheduler",
    "check_tokenizer_vocab",
    "load_recipe",
    "recipe_to_dict",
    "validate_recipe",
]
