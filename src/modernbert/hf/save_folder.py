"""Write a folder that stock transformers loads: `AutoModelForMaskedLM.from_pretrained(folder)`
and `pipeline("fill-mask", model=folder)` work with no code of ours installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import transformers

from ..model import ModernBertForMaskedLM
from ..special_tokens import MLM_ROLES, ROLES
from .model_mapping import to_hf


def as_hf_tokenizer(tokenizer: Any) -> transformers.PreTrainedTokenizerBase:
    """A transformers tokenizer; a raw `tokenizers.Tokenizer` is wrapped with the special
    tokens of docs/interfaces.md section 2."""
    if isinstance(tokenizer, transformers.PreTrainedTokenizerBase):
        return tokenizer
    if not hasattr(tokenizer, "token_to_id"):
        raise ValueError(
            "tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    special = {}
    for role in ROLES:
        if tokenizer.token_to_id(role.token) is None:
            raise ValueError(f"the tokenizer has no {role.token} token")
        special[role.tokenizer_attr] = role.token
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_input_names=["input_ids", "attention_mask"], **special
    )


def _check_tokenizer(tokenizer: transformers.PreTrainedTokenizerBase, model) -> None:
    """The tokenizer and the model must agree on the special ids and fit the vocabulary."""
    for role in MLM_ROLES:
        token_id = getattr(tokenizer, f"{role.tokenizer_attr}_id", None)
        expected = getattr(model.config, role.config_field)
        if token_id != expected:
            raise ValueError(
                f"tokenizer {role.tokenizer_attr}_id={token_id} but the model's "
                f"{role.config_field}={expected}"
            )
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens, more than vocab_size="
            f"{model.config.vocab_size}"
        )


def save_hf_folder(model: ModernBertForMaskedLM, tokenizer: Any | None, folder: str | Path) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files when a tokenizer is given)."""
    folder = Path(folder)
    hf_tokenizer = None
    if tokenizer is not None:
        hf_tokenizer = as_hf_tokenizer(tokenizer)
        _check_tokenizer(hf_tokenizer, model)
    folder.mkdir(parents=True, exist_ok=True)
    to_hf(model).save_pretrained(folder, safe_serialization=True)
    if hf_tokenizer is not None:
        hf_tokenizer.save_pretrained(folder)
    return folder
