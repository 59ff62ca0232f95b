"""ModernBERT in plain PyTorch (flash-attn optional): config, encoder, masked-LM model.

Depends on torch only, so it runs on a bare GPU box, in exports and in benchmarks.
"""

from .activations import ACTIVATIONS
from .attention import ATTENTION_BACKENDS, BACKEND_NAMES, flash_attn_available, resolve_backend
from .config import IGNORE_INDEX, ModernBertConfig
from .modeling import MaskedLMOutput, ModernBertForMaskedLM, ModernBertModel
from .varlen import Varlen, to_varlen

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_BACKENDS",
    "BACKEND_NAMES",
    "IGNORE_INDEX",
    "MaskedLMOutput",
    "ModernBertConfig",
    "ModernBertForMaskedLM",
    "ModernBertModel",
    "Varlen",
    "flash_attn_available",
    "resolve_backend",
    "to_varlen",
]
