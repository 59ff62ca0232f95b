"""Varlen attention on `torch.nn.functional.scaled_dot_product_attention` (CPU and GPU).

SDPA wants a dense `[batch, heads, len, head_dim]` layout, so the flat tokens are regrouped:

- Documents of similar length are batched together (`BucketPlan`): sorted by length, a new
  bucket starts when a document is shorter than `min_fill` times the bucket's longest, so
  padding wastes a bounded share of the quadratic work and short documents never pay for a
  long one. When every document has the same length the flat tokens are a plain view and
  no mask is built at all.
- Local layers use `BlockPlan`: the flat token stream is cut into blocks of `block` queries
  that each attend to the `block + 2 * half_window` keys around them, with a mask for
  document boundaries and the band. Work grows with `T * (block + 2 * half_window)` instead
  of `T * max_seqlen`, and documents of any length share one SDPA call. The overlapping key
  windows are a strided view, so a local layer stores no more than a global one.
  (`local_blocks=False` gives local layers the bucket layout with a band mask instead.)

Masks are built as booleans (True = may attend) and handed to SDPA as additive float masks
(0 / -inf), converted once per batch and dtype rather than by SDPA in every layer. Padding
queries may attend everywhere so no softmax row is empty (their outputs are dropped), which
keeps NaNs out of the backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..varlen import Varlen, document_ids, host_to_device


def band_mask(length: int, half_window: int, device: torch.device) -> torch.Tensor:
    """`[length, length]` True where `|i - j| <= half_window`."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= half_window


def bucket_documents(seqlens: list[int], min_fill: float) -> list[list[int]]:
    """Document indices grouped so each is at least `min_fill` times its bucket's longest."""
    order = sorted(range(len(seqlens)), key=lambda i: -seqlens[i])
    buckets: list[list[int]] = []
    for doc in order:
        if buckets and seqlens[doc] >= min_fill * seqlens[buckets[-1][0]]:
            buckets[-1].append(doc)
        else:
            buckets.append([doc])
    return buckets


class MaskCache:
    """A boolean mask and its additive float versions, made once per dtype and shared by
    every layer of the forward pass."""

    def __init__(self, allowed: torch.Tensor | None):
        self.allowed = allowed
        self._additive: dict[torch.dtype, torch.Tensor] = {}

    def get(self, dtype: torch.dtype) -> torch.Tensor | None:
        if self.allowed is None:
            return None
        if dtype not in self._additive:
            blocked = torch.full((), float("-inf"), dtype=dtype, device=self.allowed.device)
            zero = torch.zeros((), dtype=dtype, device=self.allowed.device)
            self._additive[dtype] = torch.where(self.allowed, zero, blocked)
        return self._additive[dtype]


def _sdpa(q, k, v, mask: MaskCache, dropout_p):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.get(q.dtype), dropout_p=dropout_p)


class _PickRows(torch.autograd.Function):
    """`x[index]` whose backward is the gather `grad[inverse]` instead of a scatter-add.

    Exact when `inverse` names, for every row of `x`, the one output row that carries its
    gradient, and every other output row (padding slots) has zero gradient: true for
    masked padding keys, and for padding queries once their output gradient is zeroed.
    A gather is several times faster than index_select's scatter-add backward on CPU.
    """

    @staticmethod
    def forward(ctx, x, index, inverse, zero_rows):
        ctx.save_for_backward(inverse, zero_rows)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        inverse, zero_rows = ctx.saved_tensors
        grad = grad.index_select(0, inverse)
        if zero_rows.numel():
            grad = grad.masked_fill(zero_rows.view(-1, *([1] * (grad.dim() - 1))), 0)
        return grad, None, None, None


@dataclass
class UniformPlan:
    """All documents have the same length: `[T] -> [n_docs, L]` is a view."""

    num_docs: int
    mask: MaskCache

    def attend(self, q, k, v, dropout_p: float) -> torch.Tensor:
        total, heads, dim = q.shape
        shape = (self.num_docs, total // self.num_docs, heads, dim)
        # v is usually a view into the fused qkv projection: a copy of v lets that 3x larger
        # buffer go after the forward, instead of being kept alive by SDPA for the backward.
        v = v.contiguous()
        q, k, v = (x.reshape(shape).transpose(1, 2) for x in (q, k, v))
        out = _sdpa(q, k, v, self.mask, dropout_p)
        return out.transpose(1, 2).reshape(total, heads, dim)


@dataclass
class Bucket:
    """Documents padded to a common length: `gather [n, L]` picks their flat tokens."""

    gather: torch.Tensor
    mask: MaskCache


@dataclass
class BucketPlan:
    """Documents regrouped into padded buckets.

    `gather` (all buckets, flattened) picks each slot's token, padding slots repeating a
    token of their document; `scatter [T]` is each token's slot; `padding` marks the
    padding slots (their gradient is dropped on the way back).
    """

    buckets: list[Bucket]
    gather: torch.Tensor
    scatter: torch.Tensor
    padding: torch.Tensor

    def attend(self, q, k, v, dropout_p: float) -> torch.Tensor:
        _, heads, dim = q.shape
        no_rows = self.padding[:0]
        # Padding keys are masked and padding queries' outputs dropped: zero gradient.
        qs, ks, vs = (_PickRows.apply(x, self.gather, self.scatter, no_rows) for x in (q, k, v))
        sizes = [bucket.gather.numel() for bucket in self.buckets]
        outputs = []
        # split, not slicing: its backward is one cat instead of a zero-filled copy per bucket
        for bucket, qb, kb, vb in zip(
            self.buckets, qs.split(sizes), ks.split(sizes), vs.split(sizes)
        ):
            num, length = bucket.gather.shape
            qb, kb, vb = (x.view(num, length, heads, dim).transpose(1, 2) for x in (qb, kb, vb))
            out = _sdpa(qb, kb, vb, bucket.mask, dropout_p)
            outputs.append(out.transpose(1, 2).reshape(num * length, heads, dim))
        slots = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return _PickRows.apply(slots, self.scatter, self.gather, self.padding)


@dataclass
class BlockPlan:
    """Local attention over the flat stream: query blocks with their neighbouring keys."""

    block: int
    half_window: int
    num_blocks: int
    mask: MaskCache

    def attend(self, q, k, v, dropout_p: float) -> torch.Tensor:
        total, heads, dim = q.shape
        padded = self.num_blocks * self.block
        span = self.block + 2 * self.half_window
        qb = q if padded == total else F.pad(q, (0, 0, 0, 0, 0, padded - total))
        qb = qb.view(self.num_blocks, self.block, heads, dim).transpose(1, 2)
        kv_pad = (0, 0, 0, 0, self.half_window, padded - total + self.half_window)
        # Overlapping windows as a strided view of the padded keys (SDPA reads it in place,
        # nothing is copied or stored per window); unfold's backward sums each key's
        # gradient over its windows. unfold: [blocks, heads, dim, span] -> [.., span, dim]
        kb, vb = (F.pad(x, kv_pad).unfold(0, span, self.block).permute(0, 1, 3, 2) for x in (k, v))
        out = _sdpa(qb, kb, vb, self.mask, dropout_p)
        return out.transpose(1, 2).reshape(padded, heads, dim)[:total]


def uniform_plan(varlen: Varlen, half_window: int | None) -> UniformPlan | None:
    """The view-only plan when every document has the same length, else None."""
    seqlens = varlen.seqlens
    length = seqlens[0]
    if any(n != length for n in seqlens):
        return None
    windowed = half_window is not None and length - 1 > half_window
    mask = None
    if windowed:
        mask = host_to_device(band_mask(length, half_window, torch.device("cpu")), _device(varlen))
    return UniformPlan(num_docs=len(seqlens), mask=MaskCache(mask))


def _device(varlen: Varlen) -> torch.device:
    return varlen.cu_seqlens.device


def bucket_plan(varlen: Varlen, half_window: int | None, min_fill: float) -> BucketPlan:
    """Regroup documents of similar length into padded `[n, L]` batches.

    Built on the host from the document lengths, then copied to the device: no sync."""
    seqlens = varlen.seqlens
    doc_starts = [0]
    for n in seqlens[:-1]:
        doc_starts.append(doc_starts[-1] + n)
    starts, lengths = torch.tensor(doc_starts), torch.tensor(seqlens)
    # Slot of a document's first token minus its flat offset, per document.
    shift = [0] * len(seqlens)
    buckets, gathers, paddings = [], [], []
    offset = 0
    for docs in bucket_documents(seqlens, min_fill):
        length = seqlens[docs[0]]
        for row, doc in enumerate(docs):
            shift[doc] = offset + row * length - doc_starts[doc]
        doc_idx = torch.tensor(docs)
        doc_start, doc_len = starts[doc_idx, None], lengths[doc_idx, None]
        pos = torch.arange(length)[None, :]
        valid = pos < doc_len
        # Padding slots repeat the document's last token: a valid index, masked as a key.
        gather = doc_start + torch.minimum(pos, doc_len - 1)
        offset += len(docs) * length
        gathers.append(gather.reshape(-1))
        paddings.append(~valid.reshape(-1))

        # Key padding only: every query still sees its document's own tokens.
        padded = any(seqlens[doc] != length for doc in docs)
        mask = valid[:, None, None, :] if padded else None
        if half_window is not None and length - 1 > half_window:
            band = band_mask(length, half_window, torch.device("cpu"))[None, None]
            if mask is not None:
                # A padding query far past its document's end would see no key at all.
                band = (band & mask) | ~valid[:, None, :, None]
            mask = band
        device = _device(varlen)
        mask = None if mask is None else host_to_device(mask, device)
        buckets.append(Bucket(gather=host_to_device(gather, device), mask=MaskCache(mask)))
    total = varlen.num_tokens
    scatter = torch.arange(total) + torch.repeat_interleave(
        torch.tensor(shift), lengths, output_size=total
    )
    device = _device(varlen)
    return BucketPlan(
        buckets=buckets,
        gather=host_to_device(torch.cat(gathers), device),
        scatter=host_to_device(scatter, device),
        padding=host_to_device(torch.cat(paddings), device),
    )


def block_plan(varlen: Varlen, half_window: int, block: int) -> BlockPlan:
    """Blocked local attention over the flat token stream (documents kept apart by the mask).

    The mask is built on the host from the document lengths, then copied: no sync."""
    total = varlen.num_tokens
    num_blocks = -(-total // block)
    padded = num_blocks * block
    span = block + 2 * half_window
    doc = document_ids(varlen.seqlens, total)
    # Out-of-range keys get id -1, padding queries -2: they match nothing.
    q_doc = F.pad(doc, (0, padded - total), value=-2).view(num_blocks, block)
    k_doc = F.pad(doc, (half_window, padded - total + half_window), value=-1)
    k_doc = k_doc.unfold(0, span, block)
    same_doc = q_doc[:, :, None] == k_doc[:, None, :]
    # Query a of a block sits at key offset a + half_window of its span.
    offset = torch.arange(span)[None, :] - torch.arange(block)[:, None]
    in_band = (offset >= 0) & (offset <= 2 * half_window)
    mask = (same_doc & in_band) | (q_doc < 0)[:, :, None]
    return BlockPlan(
        block=block,
        half_window=half_window,
        num_blocks=num_blocks,
        mask=MaskCache(host_to_device(mask[:, None], _device(varlen))),
    )


class SdpaBackend:
    """`scaled_dot_product_attention` over regrouped documents (see the module docstring).

    The defaults (buckets filled to 90%, local layers in blocks of half a half-window) were
    chosen by timing on the CPU: docs/benchmarks.md, "Figures behind code choices".
    """

    name = "sdpa"

    def __init__(self, min_fill: float = 0.9, block: int | None = None, local_blocks: bool = True):
        self.min_fill = min_fill
        """A bucket takes documents down to this fraction of its longest one."""
        self.block = block
        """Queries per block in local layers; None: `local_block_size(half_window)`."""
        self.local_blocks = local_blocks
        """Local layers use blocks (else buckets with a band mask, as global layers do)."""

    def plan(self, varlen: Varlen, half_window: int | None):
        if half_window is not None and varlen.max_seqlen - 1 <= half_window:
            half_window = None  # the window covers every document: global attention
        if half_window is not None and self.local_blocks:
            return block_plan(varlen, half_window, self.block or local_block_size(half_window))
        uniform = uniform_plan(varlen, half_window)
        if uniform is not None:
            return uniform
        return bucket_plan(varlen, half_window, self.min_fill)

    def attend(self, q, k, v, plan, dropout_p: float) -> torch.Tensor:
        return plan.attend(q, k, v, dropout_p)


def local_block_size(half_window: int) -> int:
    """Queries per block: each query computes `block + 2 * half_window` scores where
    `2 * half_window + 1` are needed, so smaller blocks waste less; below ~8 queries the
    per-block overhead wins."""
    return max(8, half_window // 2)
