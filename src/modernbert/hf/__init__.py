"""Conversion between our ModernBERT and transformers' `ModernBertForMaskedLM`."""

from .model_mapping import config_from_hf, from_hf, hf_config, load_hf, to_hf
from .save_folder import as_hf_tokenizer, save_hf_folder

__all__ = [
    "as_hf_tokenizer",
    "config_from_hf",
    "from_hf",
    "hf_config",
    "load_hf",
    "save_hf_folder",
    "to_hf",
]
