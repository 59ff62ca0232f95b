"""Start a run from a Hugging Face ModernBERT (`init_from: {hf: FOLDER_OR_HUB_NAME}`).

The checkpoint decides the network: its config.json becomes our `ModernBertConfig` (any
vocabulary size; `modernbert.hf.config_from_hf`), its weights are copied in
(`modernbert.hf.from_hf`), and its tokenizer is the run's unless the recipe names one.
The recipe's `model:` section may then only set how the network runs (`RUNTIME_FIELDS`),
never its shape: a shape there would either be ignored or break the weight copy.

Validation never touches the disk, so a recipe whose hf folder is a placeholder validates;
`resolve_hf_init` reads the folder's config when the run is built, fills in the special
token ids the config lacks from the tokenizer, and checks the recipe's sequence lengths
against the real model. A hub name passes through to transformers' `from_pretrained` (needs a network).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modernbert.special_tokens import MLM_ROLES
from modernbert.train.typed_yaml import RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from modernbert.model import ModernBertForMaskedLM
    from modernbert.train.config import TrainConfig

# Model fields a recipe may set on top of an HF checkpoint: they change how the network is
# run or regularised, not the shape of any weight.
RUNTIME_FIELDS = (
    "attn_backend",
    "gradient_checkpointing",
    "sparse_prediction",
    "embedding_dropout",
    "attention_dropout",
    "mlp_dropout",
)
# Our config's special-token fields -> the transformers tokenizer attribute with that id.
_TOKENIZER_IDS = {r.config_field: f"{r.tokenizer_attr}_id" for r in MLM_ROLES}


def hf_source(data: Any) -> str | None:
    """The `init_from.hf` of plain recipe data, if any."""
    init = data.get("init_from") if isinstance(data, dict) else None
    return init.get("hf") if isinstance(init, dict) else None


def hf_recipe_problems(data: dict[str, Any]) -> list[str]:
    """Model keys a recipe with `init_from.hf` may not set (the checkpoint's config decides)."""
    if not hf_source(data):
        return []
    model = data.get("model") or {}
    if not isinstance(model, dict):
        return []  # the converter reports the wrong type
    return [
        f"model.{key}: comes from init_from.hf's config.json; with init_from.hf the model "
        f"section may only set {', '.join(RUNTIME_FIELDS)}"
        for key in model
        if key not in RUNTIME_FIELDS
    ]


def tokenizer_for(cfg: TrainConfig) -> str:
    """The recipe's tokenizer, else the hf checkpoint's own (a folder must contain one)."""
    if cfg.tokenizer:
        return cfg.tokenizer
    source = cfg.init_from.hf if cfg.init_from is not None else None
    if not source:
        raise RecipeError("tokenizer: missing (required unless init_from.hf is set)")
    folder = Path(source).expanduser()
    if folder.is_dir() and not (folder / "tokenizer.json").is_file():
        raise RecipeError(
            f"tokenizer: not set, and the init_from.hf folder {folder} has no tokenizer.json; "
            "name the tokenizer the checkpoint was trained with"
        )
    return source


def resolve_hf_init(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TrainConfig:
    """The recipe with the hf checkpoint's model config (recipe runtime fields kept, special
    ids the config lacks taken from `tokenizer`), its sequence lengths checked against that
    model; unchanged without hf."""
    from transformers import AutoConfig

    from modernbert.hf import config_from_hf
    from modernbert.train.validate import loader_model_problems

    source = cfg.init_from.hf if cfg.init_from is not None else None
    if not source:
        return cfg
    _check_exists(source)
    try:
        hf_config = AutoConfig.from_pretrained(source)
        runtime = {name: getattr(cfg.model, name) for name in RUNTIME_FIELDS}
        model = config_from_hf(hf_config, **runtime)
    except (OSError, ValueError) as err:
        raise RecipeError(f"init_from.hf: cannot use {source}: {err}") from err
    missing = {
        field: getattr(tokenizer, attr)
        for field, attr in _TOKENIZER_IDS.items()
        if getattr(model, field) is None
    }
    model = dataclasses.replace(model, **missing)
    resolved = dataclasses.replace(cfg, model=model, tokenizer=tokenizer_for(cfg))
    problems = loader_model_problems(resolved)
    if problems:
        raise RecipeError(problems)
    print(
        f"init_from.hf: {source}: {model.num_hidden_layers} layers, d={model.hidden_size}, "
        f"vocab {model.vocab_size}",
        flush=True,
    )
    return resolved


def load_hf_weights(model: ModernBertForMaskedLM, source: str) -> None:
    """Copy the weights of the hf checkpoint into `model` (same config, checked key by key)."""
    from transformers import AutoModelForMaskedLM

    from modernbert.hf import from_hf

    print(f"init_from.hf: reading weights from {source}", flush=True)
    hf_model = AutoModelForMaskedLM.from_pretrained(source, attn_implementation="sdpa")
    ours = from_hf(hf_model.float(), attn_backend=model.config.attn_backend)
    model.load_state_dict(ours.state_dict(), strict=True)


def _check_exists(source: str) -> None:
    """A path that does not exist fails here, not as a hub lookup (which needs a network)."""
    path = Path(source).expanduser()
    looks_local = source.startswith(("/", "./", "../", "~")) or source.count("/") > 1
    if looks_local and not path.is_dir():
        raise FileNotFoundError(f"init_from.hf: folder not found: {path}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"init_from.hf: {path} has no config.json")
