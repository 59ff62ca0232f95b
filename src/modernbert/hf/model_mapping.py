"""Conversion to and from transformers' `ModernBertForMaskedLM`: the same weights, and
logits within 1e-4 (largest absolute difference, fp32; tests/test_hf_parity.py).

Our modules carry transformers' parameter names, so the state dict is copied key for key;
the work is in the config, mapped here field by field. Fields transformers has and we do
not (classifier pooling/dropout for fine-tuning heads, compile switches) keep their
defaults; transformers features we do not implement (RoPE scaling, an MLM-head activation
different from the MLP's, untied decoder) are refused with a clear error instead of being
silently dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import transformers

from ..model import ModernBertConfig, ModernBertForMaskedLM
from ..special_tokens import CONFIG_ID_FIELDS

# Our field -> transformers' field, where the value carries over unchanged.
_SAME_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "global_attn_every_n_layers",
    "local_attention",
    "global_rope_theta",
    "local_rope_theta",
    "norm_eps",
    "norm_bias",
    "attention_bias",
    "mlp_bias",
    "decoder_bias",
    "classifier_bias",
    "hidden_activation",
    "embedding_dropout",
    "attention_dropout",
    "mlp_dropout",
    "initializer_range",
    "initializer_cutoff_factor",
    *CONFIG_ID_FIELDS,  # mask_token_id is not a transformers field: an extra config.json entry
    "sparse_prediction",
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModernBertConfig)}


def _in_vocab(value: Any, vocab_size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size


def hf_config(
    config: ModernBertConfig, attn_implementation: str | None = "sdpa"
) -> transformers.ModernBertConfig:
    """transformers' config describing the same network as `config`."""
    values = {name: getattr(config, name) for name in _SAME_FIELDS}
    return transformers.ModernBertConfig(
        **values,
        bos_token_id=config.cls_token_id,
        eos_token_id=config.sep_token_id,
        classifier_activation=config.hidden_activation,  # our MLM head shares the MLP's act
        tie_word_embeddings=True,
        architectures=["ModernBertForMaskedLM"],
        attn_implementation=attn_implementation,
    )


def config_from_hf(hf: transformers.PretrainedConfig, **overrides: Any) -> ModernBertConfig:
    """Our config for a transformers ModernBERT config; `overrides` set our own fields
    (`attn_backend`, `gradient_checkpointing`, or a `mask_token_id` the config lacks).

    Any vocabulary size converts: a special token id the config lacks, or one outside its
    vocabulary (transformers' defaults are ModernBERT's 50k-vocab ids), becomes None; the
    tokenizer fills them in where a run needs them (`modernbert.train.init_hf`)."""
    if getattr(hf, "model_type", None) != "modernbert":
        raise ValueError(f"expected a ModernBERT config, got model_type={hf.model_type!r}")
    if getattr(hf, "rope_scaling", None):
        raise ValueError(f"rope_scaling={hf.rope_scaling!r} is not supported (plain RoPE only)")
    if not getattr(hf, "tie_word_embeddings", True):
        raise ValueError("tie_word_embeddings=False is not supported: our decoder is tied")
    values = {}
    for name in _SAME_FIELDS:
        value = getattr(hf, name, None)
        values[name] = _DEFAULTS[name] if value is None else value
    # Token ids transformers' config may lack (mask), or hold as its ModernBERT-vocab defaults
    # whatever the vocab size (pad/cls/sep): read only when they fit the vocabulary; unknown
    # stays unknown (the network does not need them).
    for name in CONFIG_ID_FIELDS:
        value = getattr(hf, name, None)
        values[name] = value if _in_vocab(value, values["vocab_size"]) else None
    if getattr(hf, "local_rope_theta", None) is None:  # transformers: local falls back to global
        values["local_rope_theta"] = values["global_rope_theta"]
    head_act = getattr(hf, "classifier_activation", values["hidden_activation"])
    if head_act != values["hidden_activation"]:
        raise ValueError(
            f"classifier_activation={head_act!r} differs from hidden_activation="
            f"{values['hidden_activation']!r}; our MLM head uses hidden_activation"
        )
    values.update(overrides)
    return ModernBertConfig(**values)


def _copy_state(source: torch.nn.Module, target: torch.nn.Module, what: str) -> None:
    """Copy every parameter by name, refusing any mismatch in names or shapes."""
    src, dst = source.state_dict(), target.state_dict()
    missing, unexpected = sorted(set(dst) - set(src)), sorted(set(src) - set(dst))
    if missing or unexpected:
        raise ValueError(f"{what}: missing weights {missing}, unexpected weights {unexpected}")
    for key, value in src.items():
        if value.shape != dst[key].shape:
            raise ValueError(
                f"{what}: {key} has shape {tuple(value.shape)}, expected {tuple(dst[key].shape)}"
            )
    target.load_state_dict(src)


def to_hf(
    model: ModernBertForMaskedLM, attn_implementation: str | None = "sdpa"
) -> transformers.ModernBertForMaskedLM:
    """A transformers `ModernBertForMaskedLM` with our weights, on our device and dtype.

    `attn_implementation`: transformers' kernel ("sdpa", "eager", "flash_attention_2", or
    None to let transformers choose).
    """
    param = next(model.parameters())
    hf_model = transformers.ModernBertForMaskedLM(hf_config(model.config, attn_implementation))
    hf_model.to(device=param.device, dtype=param.dtype)
    _copy_state(model, hf_model, "to_hf")
    return hf_model.train(model.training)


def from_hf(hf_model: transformers.PreTrainedModel, **overrides: Any) -> ModernBertForMaskedLM:
    """Our `ModernBertForMaskedLM` with the weights of a transformers one.

    `overrides` set our own config fields, e.g. `attn_backend="auto"`.
    """
    if not isinstance(hf_model, transformers.ModernBertForMaskedLM):
        raise ValueError(
            f"expected transformers.ModernBertForMaskedLM, got {type(hf_model).__name__}"
        )
    decoder, embedding = hf_model.decoder.weight, hf_model.model.embeddings.tok_embeddings.weight
    if decoder is not embedding and not torch.equal(decoder, embedding):
        raise ValueError("the decoder weight is not tied to the token embeddings")
    param = next(hf_model.parameters())
    model = ModernBertForMaskedLM(config_from_hf(hf_model.config, **overrides))
    model.to(device=param.device, dtype=param.dtype)
    _copy_state(hf_model, model, "from_hf")
    return model.train(hf_model.training)


def load_hf(name_or_path: str, **overrides: Any) -> ModernBertForMaskedLM:
    """Our model from a Hugging Face folder or hub name (the hub needs a network)."""
    hf_model = transformers.AutoModelForMaskedLM.from_pretrained(
        name_or_path, attn_implementation="sdpa"
    )
    return from_hf(hf_model, **overrides)
