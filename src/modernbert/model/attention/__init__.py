"""Attention backends by name: `sdpa`, `flash_attn`, `flex`, and `auto` to pick one.

`resolve_backend(name, device)` returns one shared instance per name, each fulfilling the
contract of `base.py` (same results within float tolerance); `auto` picks flash_attn on CUDA
when installed, else flex on CUDA, else sdpa. An unknown name fails listing the valid ones.
"""

from __future__ import annotations

import logging
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
_auto_logged: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def auto_backend_name(device: torch.device) -> str:
    """The fastest backend available on `device`: flash_attn on CUDA when installed (varlen
    kernels, no padding), else compiled flex on CUDA (one block-masked call per layer), else
    sdpa (the regrouping measured fastest on CPU)."""
    if device.type == "cuda":
        return "flash_attn" if flash_attn_available() else "flex"
    return "sdpa"


def resolve_backend(name: str, device: torch.device) -> AttentionBackend:
    """The backend called `name`; `auto` picks by device (see `auto_backend_name`) and logs
    its pick once per device type."""
    if name == "auto":
        name = auto_backend_name(device)
        if (device.type, name) not in _auto_logged:
            _auto_logged.add((device.type, name))
            log.info("attn_backend 'auto' picked %r on %s", name, device.type)
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
    "auto_backend_name",
    "flash_attn_available",
    "resolve_backend",
]
