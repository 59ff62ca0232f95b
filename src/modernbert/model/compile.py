"""Compiling model regions with a dynamic token dimension.

Batches of packed documents have a different number of tokens every step; compiled for one
size, a region would recompile at the next. Marking dim 0 of every tensor input dynamic
before each call makes the first compilation symbolic in the token count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def compile_token_region(fn: Callable, **compile_kwargs: Any) -> Callable:
    """`torch.compile(fn)` whose tensor arguments have a dynamic first (token) dimension."""
    compiled = torch.compile(fn, **compile_kwargs)

    def run(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.dim() > 0:
                torch._dynamo.maybe_mark_dynamic(arg, 0)
        return compiled(*args)

    run.__wrapped__ = fn
    return run
