"""Conversion between our ModernBERT and transformers' `ModernBertForMaskedLM`.

`to_hf` / `from_hf` / `hf_config` / `config_from_hf` / `load_hf` (model_mapping.py) map
weights key for key and configs field by field, so both models give logits within 1e-4;
`save_hf_folder` (save_folder.py) writes a folder stock transformers loads.
"""

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
