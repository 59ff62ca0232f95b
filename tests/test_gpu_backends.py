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


def flat_batch(device: str) -> dict:
    """LENGTHS as the loader's fast-path batch: flat tokens, host lengths, masked targets."""
    padded = packed_batch("cpu")
    real = padded["attention_mask"].bool()
    ids, pos = padded["input_ids"][real], padded["position_ids"][real]
    labels = padded["labels"][real]
    lengths = [n for row in LENGTHS for n in row]
    masked = torch.arange(ids.shape[0])[labels != -100]
    batch = {
        "input_ids": ids,
        "cu_seqlens": torch.tensor([0, *lengths]).cumsum(0).to(torch.int32),
        "max_seqlen": max(lengths),
        "position_ids": pos,
        "masked_positions": masked,
        "masked_labels": labels[masked],
    }
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    batch["seqlens_host"] = torch.tensor(lengths, dtype=torch.int32)
    return batch


def fast_step(model, batch, dtype=torch.bfloat16):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=dtype):
        out = model(**batch)
    out.loss.backward()
    return out.loss.float(), {n: p.grad.float() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "backend",
    [
        "sdpa",
        "flex",
        pytest.param(
            "flash_attn",
            marks=pytest.mark.skipif(not flash_attn_available(), reason="flash_attn not installed"),
        ),
    ],
)
def test_fast_path_matches_padded_sdpa(backend):
    ref_loss = run("sdpa", torch.bfloat16)[1]
    loss, grads = fast_step(make_model(backend, "cuda"), flat_batch("cuda"))
    torch.testing.assert_close(loss, ref_loss, atol=6e-2, rtol=6e-2)
    assert all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize(
    "backend",
    [
        "sdpa",
        "flex",
        pytest.param(
            "flash_attn",
            marks=pytest.mark.skipif(not flash_attn_available(), reason="flash_attn not installed"),
        ),
    ],
)
def test_fast_path_step_never_syncs(backend):
    """CUDA's own sync detector: any device-to-host wait in forward + backward raises."""
    model = make_model(backend, "cuda")
    batch = flat_batch("cuda")
    fast_step(model, batch)  # warm-up: compilation (flex) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fast_step(model, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_compiled_regions_on_cuda_match_eager_without_recompiles():
    """Inductor-compiled regions (flex attention) over batches of varying size: same loss as
    eager, zero graph breaks, no compilation after the first batches."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager = make_model("flex", "cuda")
    compiled = make_model("flex", "cuda").compile_regions()
    base = flat_batch("cuda")
    frames = []
    for step in range(12):
        keep = len(LENGTHS[0]) if step % 2 else sum(len(r) for r in LENGTHS)
        batch = sub_batch(base, keep - (step % 3 == 0 and keep > 1))
        loss, _ = fast_step(compiled, batch)
        ref, _ = fast_step(eager, batch)
        torch.testing.assert_close(loss, ref, atol=3e-2, rtol=3e-2)
        frames.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert dict(torch._dynamo.utils.counters["graph_break"]) == {}
    assert frames[-1] == frames[3], f"recompiled in steady state: {frames}"


def sub_batch(batch: dict, docs: int) -> dict:
    """The first `docs` documents of a fast-path batch (fewer tokens and masked tokens)."""
    lengths = batch["seqlens_host"][:docs]
    total = int(lengths.sum())
    masked = batch["masked_positions"].cpu()
    keep = int((masked < total).sum())
    out = dict(batch)
    out.update(
        input_ids=batch["input_ids"][:total],
        cu_seqlens=batch["cu_seqlens"][: docs + 1],
        max_seqlen=int(lengths.max()),
        position_ids=batch["position_ids"][:total],
        masked_positions=batch["masked_positions"][:keep],
        masked_labels=batch["masked_labels"][:keep],
        seqlens_host=lengths,
    )
    return out
