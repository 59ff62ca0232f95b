"""The sdpa backend's layouts (view, buckets, blocks) against a per-document reference."""

import math

import pytest
import torch

from modernbert.model.attention import SdpaBackend, resolve_backend
from modernbert.model.attention.sdpa import BlockPlan, BucketPlan, UniformPlan, bucket_documents
from modernbert.model.varlen import varlen_from_flat


def reference_attention(q, k, v, seqlens, half_window):
    """Plain softmax attention, one document at a time, explicit band."""
    out, start = [], 0
    for n in seqlens:
        qs, ks, vs = (x[start : start + n].transpose(0, 1) for x in (q, k, v))
        scores = qs @ ks.transpose(1, 2) / math.sqrt(q.shape[-1])
        if half_window is not None:
            idx = torch.arange(n)
            scores = scores.masked_fill(
                (idx[:, None] - idx[None, :]).abs() > half_window, -math.inf
            )
        out.append((scores.softmax(-1) @ vs).transpose(0, 1))
        start += n
    return torch.cat(out)


def run(backend, seqlens, half_window, heads=2, dim=8):
    torch.manual_seed(0)
    total = sum(seqlens)
    q, k, v = (
        torch.randn(total, heads, dim, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    cu = torch.tensor([0, *torch.tensor(seqlens).cumsum(0).tolist()], dtype=torch.int32)
    _, varlen = varlen_from_flat(torch.zeros(total, dtype=torch.long), cu)
    plan = backend.plan(varlen, half_window)
    out = backend.attend(q, k, v, plan, 0.0)
    ref = reference_attention(q, k, v, seqlens, half_window)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
    return plan


@pytest.mark.parametrize("half_window", [None, 2, 5, 11])
def test_uniform_lengths_use_a_view(half_window):
    plan = run(SdpaBackend(local_blocks=False), [12, 12, 12], half_window)
    assert isinstance(plan, UniformPlan)
    # A window spanning the whole document (11 for length 12) is global attention.
    assert (plan.mask.allowed is None) == (half_window in (None, 11))


@pytest.mark.parametrize("half_window", [None, 1, 3, 50])
def test_buckets_match_reference(half_window):
    backend = SdpaBackend(min_fill=0.7, local_blocks=False)
    plan = run(backend, [3, 17, 1, 9, 16, 8, 30, 2], half_window)
    assert isinstance(plan, BucketPlan)
    assert len(plan.buckets) > 1


@pytest.mark.parametrize("block", [4, 8, 32])
@pytest.mark.parametrize("half_window", [1, 3, 6])
def test_blocks_match_reference(block, half_window):
    backend = SdpaBackend(block=block)
    plan = run(backend, [3, 17, 1, 9, 40, 8, 2], half_window)
    assert isinstance(plan, BlockPlan)


def test_bucketing_bounds_padding():
    lengths = [100, 90, 71, 69, 50, 10, 9, 1]
    buckets = bucket_documents(lengths, min_fill=0.7)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for bucket in buckets:
        longest = lengths[bucket[0]]
        assert all(0.7 * longest <= lengths[i] <= longest for i in bucket)


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError, match="sdpa, flash_attn, flex, auto"):
        resolve_backend("xformers", torch.device("cpu"))


def test_auto_is_sdpa_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")).name == "sdpa"


def test_flash_attn_refuses_cpu_clearly():
    cu = torch.tensor([0, 4], dtype=torch.int32)
    _, varlen = varlen_from_flat(torch.zeros(4, dtype=torch.long), cu)
    with pytest.raises(ValueError, match="flash_attn"):
        resolve_backend("flash_attn", torch.device("cpu")).plan(varlen, None)


@pytest.mark.parametrize("half_window", [None, 3, 40, 200])
def test_flex_block_layout_covers_exactly_the_allowed_pairs(half_window):
    """Every query-key pair that may attend lies in a partial or full tile, and full tiles
    hold only pairs that may: what the compiled kernel relies on (eager flex ignores tiles)."""
    from modernbert.model.attention.flex import block_layout, padded_length

    block = 16
    lengths = [3, 17, 1, 40, 9, 64, 2, 33, 16, 16]
    total = sum(lengths)
    padded = padded_length(total, block)
    assert padded % block == 0 and total <= padded < 1.25 * total + block
    doc = torch.full((padded,), -1)
    doc[:total] = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    idx = torch.arange(padded)
    allowed = (doc[:, None] == doc[None, :]) & (doc[:, None] >= 0)
    if half_window is not None:
        allowed &= (idx[:, None] - idx[None, :]).abs() <= half_window
    partial, full = block_layout(doc, half_window, block)
    assert not (partial & full).any()
    tiles = allowed.view(padded // block, block, padded // block, block)
    any_pair, all_pairs = tiles.any(3).any(1), tiles.all(3).all(1)
    assert torch.equal(any_pair & ~(partial | full), torch.zeros_like(any_pair))
    assert torch.equal(full & ~all_pairs, torch.zeros_like(full))
    # Not trivially everything: some tiles are skipped, and (when a window holds a whole
    # tile) some run without a mask.
    assert (~(partial | full)).any()
    assert full.any() == (half_window is None or half_window >= block - 1)


def test_auto_prefers_flash_then_flex_on_cuda(monkeypatch):
    import modernbert.model.attention as attention

    cuda = torch.device("cuda")
    monkeypatch.setattr(attention, "flash_attn_available", lambda: True)
    assert attention.auto_backend_name(cuda) == "flash_attn"
    monkeypatch.setattr(attention, "flash_attn_available", lambda: False)
    assert attention.auto_backend_name(cuda) == "flex"
    assert attention.auto_backend_name(torch.device("cpu")) == "sdpa"


def test_auto_logs_its_pick_once(monkeypatch, caplog):
    import modernbert.model.attention as attention

    monkeypatch.setattr(attention, "_auto_logged", set())
    with caplog.at_level("INFO", logger=attention.__name__):
        for _ in range(3):
            resolve_backend("auto", torch.device("cpu"))
    assert [r.getMessage() for r in caplog.records] == ["attn_backend 'auto' picked 'sdpa' on cpu"]
