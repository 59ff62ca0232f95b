"""Unpadding: from the caller's layout to the flat real tokens the encoder works on.

Two input layouts are accepted (docs/interfaces.md section 4):
- `[B, L]` padded or packed rows with `attention_mask` (1 = real token) and optional
  `position_ids`; a document starts at the first real token of a row and wherever
  `position_ids` goes back to 0 among real tokens;
- `[T]` flat tokens with `cu_seqlens [n_docs + 1]` (int32), the form flash-attn uses,
  optionally with `seqlens_host`, the document lengths as a CPU tensor: then nothing here
  reads the device (the training fast path, docs/interfaces.md section 4).

`Varlen` describes the flat form (document offsets, per-document positions for RoPE) and
knows how to put per-token results back into the caller's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Varlen:
    """Where the `T` real tokens of a batch sit and which document each belongs to."""

    cu_seqlens: torch.Tensor
    """`[n_docs + 1]` int32 offsets of the documents in the flat token order."""
    max_seqlen: int
    """Length of the longest document."""
    positions: torch.Tensor
    """`[T]` int64 position of every token inside its document (RoPE input)."""
    input_shape: tuple[int, ...]
    """Shape of the caller's `input_ids` (`(B, L)` or `(T,)`), for repadding."""
    indices: torch.Tensor | None = None
    """`[T]` positions of the real tokens in the flattened `[B*L]` input; None when the input
    was already flat or had no padding (then unpadding is a reshape)."""
    _seqlens: list[int] | None = field(default=None, repr=False)
    """Document lengths on the host: given by the loader on the fast path, else read once."""

    @property
    def num_tokens(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_docs(self) -> int:
        return int(self.cu_seqlens.shape[0]) - 1

    @property
    def seqlens(self) -> list[int]:
        """Document lengths on the host (read from the device once when the caller gave no
        `seqlens_host`, then cached for every layer)."""
        if self._seqlens is None:
            self._seqlens = torch.diff(self.cu_seqlens).tolist()
        return self._seqlens

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, L, ...]` (or `[T, ...]` for flat inputs) -> `[T, ...]` real tokens."""
        if len(self.input_shape) == 1:
            return x
        flat = x.reshape(-1, *x.shape[2:])
        return flat if self.indices is None else flat[self.indices]

    def repad(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """`[T, ...]` -> the caller's layout, `fill` on padding positions."""
        if len(self.input_shape) == 1:
            return x
        if self.indices is None:
            return x.reshape(*self.input_shape, *x.shape[1:])
        batch, length = self.input_shape
        out = x.new_full((batch * length, *x.shape[1:]), fill)
        out[self.indices] = x
        return out.view(batch, length, *x.shape[1:])


def positions_from_cu_seqlens(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """`[T]` index of every token inside its document."""
    lengths = torch.diff(cu_seqlens).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - starts


def varlen_from_padded(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Varlen]:
    """Flat real tokens `[T]` and their `Varlen` from `[B, L]` rows."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L] here, got shape {tuple(input_ids.shape)}")
    shape = tuple(input_ids.shape)
    for name, tensor in (("attention_mask", attention_mask), ("position_ids", position_ids)):
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} shape {tuple(tensor.shape)} does not match input_ids shape {shape}"
            )
    device = input_ids.device
    if attention_mask is None:
        real = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        real = attention_mask.bool()
    # A document starts at a row's first real token, and wherever position_ids resets to 0.
    starts = real & (real.cumsum(dim=1) == 1)
    if position_ids is not None:
        starts = starts | (real & (position_ids == 0))

    real_flat = real.reshape(-1)
    num_tokens = int(real_flat.sum())
    if num_tokens == 0:
        raise ValueError("attention_mask selects no token: the batch has nothing to encode")
    indices = None if num_tokens == real_flat.numel() else real_flat.nonzero().squeeze(1)

    def unpad(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1)
        return flat if indices is None else flat[indices]

    flat_ids = unpad(input_ids)
    doc_starts = unpad(starts).nonzero().squeeze(1)
    cu_seqlens = torch.cat(
        [doc_starts, torch.tensor([num_tokens], device=device, dtype=doc_starts.dtype)]
    ).to(torch.int32)
    seqlens = torch.diff(cu_seqlens).tolist()
    if position_ids is None:
        positions = positions_from_cu_seqlens(cu_seqlens, num_tokens)
    else:
        positions = unpad(position_ids).long()
    varlen = Varlen(
        cu_seqlens=cu_seqlens,
        max_seqlen=max(seqlens),
        positions=positions,
        input_shape=shape,
        indices=indices,
        _seqlens=seqlens,
    )
    return flat_ids, varlen


def varlen_from_flat(
    input_ids: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    max_seqlen: int | None = None,
    position_ids: torch.Tensor | None = None,
    seqlens_host: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Varlen]:
    """`Varlen` for already flat tokens `[T]` described by `cu_seqlens`.

    With `seqlens_host` every check runs on the host copy and the device is never read;
    without it the lengths are read from `cu_seqlens` (one sync)."""
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be flat [T] here, got shape {tuple(input_ids.shape)}")
    if cu_seqlens is None:
        raise ValueError("cu_seqlens is required when input_ids is flat [T]")
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2:
        raise ValueError(f"cu_seqlens must be [n_docs + 1], got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.dtype != torch.int32:
        raise ValueError(f"cu_seqlens must be int32, got {cu_seqlens.dtype}")
    total = int(input_ids.shape[0])
    if seqlens_host is None:
        seqlens = torch.diff(cu_seqlens).tolist()
        if int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != total or min(seqlens) <= 0:
            raise ValueError(
                f"cu_seqlens must start at 0, increase strictly and end at T={total}; "
                f"got {cu_seqlens.tolist()[:8]}..."
            )
    else:
        seqlens = _host_seqlens(seqlens_host, int(cu_seqlens.shape[0]) - 1, total)
    longest = max(seqlens)
    if max_seqlen is not None and max_seqlen < longest:
        raise ValueError(f"max_seqlen={max_seqlen} is below the longest document ({longest})")
    if position_ids is None:
        positions = positions_from_cu_seqlens(cu_seqlens, total)
    else:
        if tuple(position_ids.shape) != (total,):
            raise ValueError(
                f"position_ids shape {tuple(position_ids.shape)} does not match input_ids ({total},)"
            )
        positions = position_ids.long()
    varlen = Varlen(
        cu_seqlens=cu_seqlens,
        max_seqlen=longest,
        positions=positions,
        input_shape=(total,),
        _seqlens=seqlens,
    )
    return input_ids, varlen


def _host_seqlens(seqlens_host: torch.Tensor, num_docs: int, total: int) -> list[int]:
    """The loader's CPU copy of the document lengths, checked against the shapes only."""
    if seqlens_host.device.type != "cpu":
        raise ValueError(
            f"seqlens_host must be a CPU tensor (host metadata), got one on {seqlens_host.device}"
        )
    if seqlens_host.dim() != 1 or int(seqlens_host.shape[0]) != num_docs:
        raise ValueError(
            f"seqlens_host must be [n_docs] = [{num_docs}] like cu_seqlens, "
            f"got shape {tuple(seqlens_host.shape)}"
        )
    seqlens = seqlens_host.tolist()
    if sum(seqlens) != total or min(seqlens) <= 0:
        raise ValueError(
            f"seqlens_host must be positive and sum to T={total}; got {seqlens[:8]}..."
        )
    return seqlens


def to_varlen(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    max_seqlen: int | None = None,
    seqlens_host: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Varlen]:
    """Dispatch on the input layout: `[B, L]` rows or `[T]` flat tokens."""
    if input_ids.dim() == 2:
        if cu_seqlens is not None or seqlens_host is not None:
            raise ValueError(
                "cu_seqlens and seqlens_host are only for flat [T] input_ids; [B, L] rows derive them"
            )
        return varlen_from_padded(input_ids, attention_mask, position_ids)
    if input_ids.dim() == 1:
        if attention_mask is not None:
            raise ValueError("attention_mask is only for [B, L] rows; flat [T] input is all real")
        return varlen_from_flat(input_ids, cu_seqlens, max_seqlen, position_ids, seqlens_host)
    raise ValueError(f"input_ids must be [B, L] or [T], got shape {tuple(input_ids.shape)}")


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a plan tensor built on the host to `device` without waiting for it: pinned and
    `non_blocking` on CUDA, so building attention plans never stalls the GPU stream."""
    if device.type == "cpu":
        return tensor
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def document_ids(seqlens: list[int], total: int) -> torch.Tensor:
    """`[T]` int64 document index of every token, on the host."""
    return torch.repeat_interleave(
        torch.arange(len(seqlens)), torch.tensor(seqlens), output_size=total
    )
