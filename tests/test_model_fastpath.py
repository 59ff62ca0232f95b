"""The training fast path (flat tokens + host-side lengths + masked positions): same results
as the padded path, no device sync, compile-clean regions, no wasted FLOPs, a chunked loss."""

import random

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from modernbert.bench.flops import forward_flops
from modernbert.model import IGNORE_INDEX, ModernBertConfig, ModernBertForMaskedLM
from modernbert.model.loss import chunked_cross_entropy, cross_entropy_sum
from modernbert.model.syncs import SyncCounter

VOCAB = 512


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is as fast and does not fight the other jobs on the box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> ModernBertConfig:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        local_attention=16,
        global_attn_every_n_layers=3,
        local_rope_theta=500.0,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    values.update(overrides)
    return ModernBertConfig(**values)


def tiny_model(**overrides) -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    return ModernBertForMaskedLM(tiny_config(**overrides))


def random_lengths(seed: int, total: int, longest: int = 60) -> list[int]:
    """Web-like document lengths (many short, a few long, some of one token)."""
    rng = random.Random(seed)
    lengths: list[int] = []
    while sum(lengths) < total:
        lengths.append(min(longest, max(1, int(rng.lognormvariate(2.8, 1.0)))))
    return lengths


def flat_batch(lengths: list[int], seed: int = 0, mask_prob: float = 0.3) -> dict:
    """The loader's fast-path batch for documents of `lengths` (as in the contract)."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    ids = torch.randint(5, VOCAB, (total,), generator=gen)
    positions = torch.cat([torch.arange(n) for n in lengths])
    offsets = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    masked = torch.randperm(total, generator=gen)[: max(1, int(mask_prob * total))].sort().values
    return {
        "input_ids": ids,
        "cu_seqlens": offsets,
        "max_seqlen": max(lengths),
        "position_ids": positions,
        "seqlens_host": torch.tensor(lengths, dtype=torch.int32),
        "masked_positions": masked,
        "masked_labels": ids[masked],
    }


def padded_form(batch: dict) -> dict:
    """The same batch as one `[1, T]` packed row with per-token labels (the older path)."""
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    labels[batch["masked_positions"]] = batch["masked_labels"]
    return {
        "input_ids": batch["input_ids"][None],
        "position_ids": batch["position_ids"][None],
        "labels": labels[None],
    }


def loss_and_grads(model: ModernBertForMaskedLM, batch: dict):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


LENGTHS = [17, 3, 40, 1, 9, 25, 60, 2, 33]


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_fast_path_equals_padded_path(backend):
    """Loss and gradients in training (chunked loss, several chunks), logits in eval, fp32."""
    batch = flat_batch(LENGTHS)
    reference = tiny_model().train()
    ref_out, ref_grads = loss_and_grads(reference, padded_form(batch))
    model = tiny_model(attn_backend=backend).train()
    model.loss_chunk_rows = 16  # several chunks and a ragged last one
    out, grads = loss_and_grads(model, batch)
    assert out.logits is None  # training: the loss only
    torch.testing.assert_close(out.loss, ref_out.loss, atol=1e-5, rtol=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)
    with torch.no_grad():
        eval_out = model.eval()(**batch)
        ref_eval = reference.eval()(**padded_form(batch))
    torch.testing.assert_close(eval_out.logits, ref_eval.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eval_out.labels, ref_eval.labels)
    torch.testing.assert_close(eval_out.loss, ref_eval.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_training_step_makes_no_device_sync(backend):
    model = tiny_model(attn_backend=backend, global_attn_every_n_layers=2).train()
    model.loss_chunk_rows = 32
    loss_and_grads(model, flat_batch(LENGTHS))  # first use imports lazily (not the step)
    for seed, lengths in enumerate([LENGTHS, [64] * 4, random_lengths(3, 300)]):
        with SyncCounter() as syncs:
            loss_and_grads(model, flat_batch(lengths, seed=seed))
        assert syncs.total == 0, dict(syncs.counts)


def test_sync_counter_sees_the_padded_path_syncs():
    """The counter is not blind: the padded path (allowed to sync) does read the device."""
    model = tiny_model().train()
    with SyncCounter() as syncs:
        loss_and_grads(model, padded_form(flat_batch(LENGTHS)))
    assert syncs.counts["aten.nonzero.default"] > 0
    assert syncs.counts["aten._local_scalar_dense.default"] > 0


def test_training_step_runs_on_the_meta_device():
    """Device tensors on `meta` (no data at all), host lengths on the CPU: any op that needs
    a device value (.item(), .tolist(), nonzero, boolean indexing) would fail here."""
    model = tiny_model(gradient_checkpointing=True).train().to("meta")
    batch = flat_batch(LENGTHS)
    batch = {
        k: v.to("meta") if isinstance(v, torch.Tensor) and k != "seqlens_host" else v
        for k, v in batch.items()
    }
    out = model(**batch)
    out.loss.backward()
    assert out.loss.device.type == "meta"
    assert model.model.layers[1].attn.Wqkv.weight.grad.shape == (192, 64)


def test_forward_flops_match_the_analytic_count():
    """Counted matmul + attention FLOPs (SDPA's math kernel, so attention shows as bmm) of
    the fast path within 5% of the useful FLOPs: no work on padding, no keys outside the
    window, the head on masked tokens only."""
    config = tiny_config(num_hidden_layers=6)
    model = ModernBertForMaskedLM(config).eval()
    lengths = random_lengths(0, 2000, longest=128)
    batch = flat_batch(lengths)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as flops:
        model(**batch)
    analytic = forward_flops(config, lengths, int(batch["masked_positions"].shape[0]))
    ratio = flops.get_total_flops() / analytic
    assert 1.0 <= ratio <= 1.05, f"counted / analytic FLOPs = {ratio:.4f}"


class RegionCounter:
    """A torch.compile backend that runs graphs eagerly and counts them per region."""

    def __init__(self):
        self.graphs = {"pre_attention": 0, "post_attention": 0, "head_loss": 0}

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        inputs = " ".join(str(n.target) for n in gm.graph.nodes if n.op == "placeholder")
        if "decoder" in inputs:
            self.graphs["head_loss"] += 1
        elif "mlp" in inputs:
            self.graphs["post_attention"] += 1
        else:
            assert "Wqkv" in inputs, inputs
            self.graphs["pre_attention"] += 1
        return gm.forward


def run_compiled(checkpointing: bool, steps: int) -> RegionCounter:
    """`steps` training steps of a region-compiled model on batches of varying token,
    document and masked counts; the first two are checked against the eager model."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    counter = RegionCounter()
    eager = tiny_model(global_attn_every_n_layers=2, gradient_checkpointing=checkpointing)
    compiled = tiny_model(global_attn_every_n_layers=2, gradient_checkpointing=checkpointing)
    for model in (eager, compiled):
        model.train().loss_chunk_rows = 24
    compiled.compile_regions(backend=counter)
    warm = None
    for step in range(steps):
        batch = flat_batch(random_lengths(step, 60 + 3 * step, longest=40), seed=step)
        out, grads = loss_and_grads(compiled, batch)
        if step < 2:
            ref, ref_grads = loss_and_grads(eager, batch)
            torch.testing.assert_close(out.loss, ref.loss)
            for name, grad in ref_grads.items():
                torch.testing.assert_close(grads[name], grad, msg=name)
        if step == 2:
            warm = dict(counter.graphs)
    assert dict(torch._dynamo.utils.counters["graph_break"]) == {}
    assert counter.graphs == warm, (
        f"a region recompiled in steady state: {warm} -> {counter.graphs}"
    )
    torch._dynamo.reset()
    return counter


def test_compiled_regions_have_no_graph_break_and_compile_once():
    """50 batches: zero graph breaks, no compilation after the first batch, and at most two
    graphs per region (layer 0's pre-attention has no norm: its own graph)."""
    counter = run_compiled(checkpointing=False, steps=50)
    assert counter.graphs == {"pre_attention": 2, "post_attention": 1, "head_loss": 1}


def test_compiled_regions_work_with_gradient_checkpointing():
    counter = run_compiled(checkpointing=True, steps=4)
    assert counter.graphs == {"pre_attention": 2, "post_attention": 1, "head_loss": 1}


def test_chunked_loss_equals_plain_cross_entropy():
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (37,))
    targets[[3, 20]] = IGNORE_INDEX

    def chunk_loss(rows, row_targets):
        return cross_entropy_sum(rows @ weight.T, row_targets)

    plain = torch.nn.functional.cross_entropy(hidden @ weight.T, targets)
    chunked = chunked_cross_entropy(chunk_loss, hidden, targets, chunk_rows=5)
    torch.testing.assert_close(chunked, plain)
    grads = torch.autograd.grad(chunked, (hidden, weight))
    ref_grads = torch.autograd.grad(plain, (hidden, weight))
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref)


def test_chunked_loss_of_no_target_is_zero():
    hidden = torch.randn(0, 8, requires_grad=True)
    loss = chunked_cross_entropy(
        lambda rows, t: cross_entropy_sum(rows @ torch.ones(8, 3), t),
        hidden,
        torch.zeros(0, dtype=torch.long),
    )
    assert loss.item() == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"masked_labels": None}, "go together"),
        ({"masked_positions": torch.zeros(2, 1, dtype=torch.long)}, "must both be"),
        ({"masked_positions": torch.zeros(2, dtype=torch.int32)}, "int64"),
        ({"seqlens_host": torch.tensor([5, 5], dtype=torch.int32)}, "sum to T"),
        ({"seqlens_host": torch.tensor([9], dtype=torch.int32)}, r"\[n_docs\]"),
    ],
)
def test_bad_fast_path_inputs_raise_clear_errors(change, message):
    batch = flat_batch([4, 5])  # two masked tokens
    batch.update(change)
    with pytest.raises(ValueError, match=message):
        tiny_model()(**batch)
