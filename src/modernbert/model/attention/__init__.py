"""Attention backends by name: `sdpa`, `flash_attn`, `flex`, and `auto` to pick one."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import AttentionBackend
from .flash import FlashAttnBackend, flash_attn_available
from .flex import FlexBackend
from .sdpa import SdpaBackend

ATTENTION_BACKENDS: dict[str, Callable[[], AttentionBackend]] = {
    "sdpa": SdpaBackend,
    "flash_attn": FlashAttnBackend,
    "flex": FlexBackend,
}
BACKEND_NAMES: tuple[str, ...] = (*ATTENTION_BACKENDS, "auto")
"""Valid values of `ModernBertConfig.attn_backend`."""

_instances: dict[str, AttentionBackend] = {}


def resolve_backend(name: str, device: torch.device) -> AttentionBackend:
    """The backend called `name`; `auto` is flash_attn on CUDA when installed, else sdpa."""
    if name == "auto":
        name = "flash_attn" if device.type == "cuda" and flash_attn_available() else "sdpa"
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attn_backend {name!r}; valid: {', '.join(BACKEND_NAMES)}")
    if name not in _instances:
        _instances[name] = ATTENTION_BACKENDS[name]()
    return _instances[name]


__all__ = [
    "ATTENTION_BACKENDS",
    "BACKEND_NAMES",
    "AttentionBackend",
    "FlashAttnBackend",
    "FlexBackend",
    "SdpaBackend",
    "flash_attn_available",
    "resolve_backend",
]
