"""Counting the ops that make the host wait for the device (a debugging and test aid).

A training step that reads a number from the GPU (`.item()`, `nonzero`, boolean-mask
indexing, data-dependent output shapes) stalls the host until every queued kernel has run,
so the next step cannot be queued behind this one. `SyncCounter` counts those ops as they
are dispatched, on any device, so a CPU test can prove the fast path has none. (A CPU
`.tolist()` does not dispatch and is not seen: run the step with device tensors on the
`meta` device too, where any data-dependent op fails.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

ALWAYS_SYNC = frozenset(
    {
        aten._local_scalar_dense.default,  # .item(), int(t), float(t), bool(t)
        aten.nonzero.default,
        aten.argwhere.default,
        aten.masked_select.default,
        aten._unique2.default,
        aten.unique_dim.default,
        aten.unique_consecutive.default,
        aten.equal.default,
        aten.is_nonzero.default,
        aten.allclose.default,
    }
)
"""Ops whose result is a host value or has a shape that depends on device data."""


def _has_bool_index(indices: Any) -> bool:
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ()
    )


def is_sync(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether dispatching `func(*args, **kwargs)` reads the device from the host."""
    if func in ALWAYS_SYNC:
        return True
    packet = func.overloadpacket
    if packet in (aten.index, aten._unsafe_index) or packet in (aten.index_put, aten.index_put_):
        return _has_bool_index(args[1] if len(args) > 1 else kwargs.get("indices"))
    if packet is aten.repeat_interleave:
        # Without output_size the output length is the sum of the repeats: a device read.
        return (
            isinstance(args[0], torch.Tensor)
            and kwargs.get("output_size") is None
            and (len(args) < 4 or args[3] is None)
        )
    if packet is aten._to_copy:
        source, target = args[0], kwargs.get("device")
        return (
            isinstance(source, torch.Tensor)
            and source.device.type not in ("cpu", "meta")
            and target is not None
            and torch.device(target).type == "cpu"
        )
    return False


class SyncCounter(TorchDispatchMode):
    """`with SyncCounter() as syncs: ...` then `syncs.counts` (op name -> calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if is_sync(func, args, kwargs):
            self.counts[str(func)] += 1
        return func(*args, **kwargs)


def _run_kernel_uncounted(hop: Any) -> Any:
    """A higher-order op (flex attention) is one fused kernel on the GPU: run it with the
    counter popped (its eager CPU reference is not what the device runs)."""

    def handler(mode: SyncCounter, *args: Any, **kwargs: Any) -> Any:
        return hop(*args, **kwargs)

    return handler


def _register_kernel_ops() -> None:
    from torch._higher_order_ops.flex_attention import (
        flex_attention as flex_hop,
    )
    from torch._higher_order_ops.flex_attention import (
        flex_attention_backward as flex_backward_hop,
    )

    for hop in (flex_hop, flex_backward_hop):
        hop.py_impl(SyncCounter)(_run_kernel_uncounted(hop))


_register_kernel_ops()
