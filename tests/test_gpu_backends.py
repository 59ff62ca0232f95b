"""Attention backends agree on CUDA: sdpa vs flex (and flash_attn when installed), on packed
variable-length rows with local-window layers, forward and backward."""

import pytest
import torch

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM, flash_attn_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

VOCAB = 1024
LENGTHS = [[300, 17, 150], [1, 90, 200, 64], [511]]  # rows of 512: short, long, single-token docs
SEQ = 512


def packed_batch(device):
    gen = torch.Generator().manual_seed(0)
    ids = torch.zeros(len(LENGTHS), SEQ, dtype=torch.long)
    mask = torch.zeros_like(ids)
    pos = torch.zeros_like(ids)
    for r, row in enumerate(LENGTHS):
        start = 0
        for n in row:
            ids[r, start : start + n] = torch.randint(5, VOCAB, (n,), generator=gen)
            mask[r, start : start + n] = 1
            pos[r, start : start + n] = torch.arange(n)
            start += n
    labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.3, ids, -100).masked_fill(
        mask == 0, -100
    )
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def make_model(backend: str, device: str) -> ModernBertForMaskedLM:
    cfg = ModernBertConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=192,
        num_hidden_layers=4,
        num_attention_heads=2,  # head dim 64
        local_attention=64,
        global_attn_every_n_layers=2,
        global_rope_theta=160000.0,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
        attn_backend=backend,
    )
    torch.manual_seed(0)
    return ModernBertForMaskedLM(cfg).to(device).train()


def run(backend: str, dtype: torch.dtype | None):
    model = make_model(backend, "cuda")
    batch = packed_batch("cuda")
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters()}
    return out.logits.float(), out.loss.float(), grads


def compare(backend: str, dtype: torch.dtype | None, atol: float, rtol: float):
    ref_logits, ref_loss, ref_grads = run("sdpa", dtype)
    logits, loss, grads = run(backend, dtype)
    torch.testing.assert_close(logits, ref_logits, atol=atol, rtol=rtol)
    torch.testing.assert_close(loss, ref_loss, atol=atol, rtol=rtol)
    for name in ("model.layers.1.attn.Wqkv.weight", "model.embeddings.tok_embeddings.weight"):
        scale = ref_grads[name].abs().max()
        torch.testing.assert_close(
            grads[name] / scale, ref_grads[name] / scale, atol=atol, rtol=rtol
        )


def test_sdpa_cuda_matches_cpu():
    """The GPU sdpa path against the CPU one (itself checked against transformers)."""
    logits, loss, _ = run("sdpa", None)
    out = make_model("sdpa", "cpu")(**packed_batch("cpu"))
    torch.testing.assert_close(logits.cpu(), out.logits, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(loss.cpu(), out.loss, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize(
    ("dtype", "atol", "rtol"), [(None, 2e-3, 2e-3), (torch.bfloat16, 6e-2, 6e-2)]
)
def test_flex_matches_sdpa(dtype, atol, rtol):
    compare("flex", dtype, atol, rtol)


@pytest.mark.skipif(not flash_attn_available(), reason="flash_attn not installed")
def test_flash_attn_matches_sdpa():
    compare("flash_attn", torch.bfloat16, 6e-2, 6e-2)


def test_auto_picks_a_working_backend():
    logits, _, _ = run("auto", torch.bfloat16)
    assert torch.isfinite(logits).all()
