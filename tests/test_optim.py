"""Optimizers: parameter groups and fully decoupled weight decay."""

from __future__ import annotations

import copy

import pytest
import torch
from composer.optim import DecoupledAdamW
from optimi import StableAdamW

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.optim import OPTIMIZERS, OptimizerConfig, build_optimizer, param_groups


def tiny_model() -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    cfg = ModernBertConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        local_attention=16,
        max_position_embeddings=256,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    return ModernBertForMaskedLM(cfg)


def names_of(model: torch.nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_norms_and_biases_get_no_weight_decay():
    model = tiny_model()
    decay, exempt = param_groups(model, weight_decay=0.1, filter_bias_norm_wd=True)
    assert decay["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    exempt_names = names_of(model, exempt)
    decay_names = names_of(model, decay)
    assert "model.embeddings.norm.weight" in exempt_names  # the embedding norm
    assert "model.final_norm.weight" in exempt_names and "decoder.bias" in exempt_names
    assert all(n.endswith(("norm.weight", "bias")) for n in exempt_names)
    assert "model.embeddings.tok_embeddings.weight" in decay_names  # tied with the decoder
    assert "model.layers.0.attn.Wqkv.weight" in decay_names
    assert all(p.ndim == 2 for p in decay["params"])
    # every trainable parameter exactly once (the tied decoder weight is not duplicated)
    n_params = len(list(model.parameters()))
    assert len(decay["params"]) + len(exempt["params"]) == n_params
    assert not decay_names & exempt_names


def test_unfiltered_and_frozen():
    model = tiny_model()
    (group,) = param_groups(model, 0.1, filter_bias_norm_wd=False)
    assert len(group["params"]) == len(list(model.parameters()))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1, True)


@pytest.mark.filterwarnings("ignore:You are using weight_decay")
@pytest.mark.parametrize(
    ("name", "cls"), [("stable_adamw", StableAdamW), ("decoupled_adamw", DecoupledAdamW)]
)
def test_decay_is_fully_decoupled_from_lr(name, cls):
    """With zero gradients only weight decay moves weights: w *= 1 - wd * lr / peak_lr."""
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wd, peak = 0.01, 1e-3
    opt = build_optimizer(OptimizerConfig(name=name, lr=peak, weight_decay=wd), model)
    assert isinstance(opt, cls) and len(opt.param_groups) == 2
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = 1.0 if p.ndim < 2 else 1 - wd
        torch.testing.assert_close(p.detach(), before[n] * factor)
    # at half the peak LR (what a scheduler does) the shrink halves too
    for group in opt.param_groups:
        group["lr"] = peak / 2
    mid = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        factor = 1.0 if p.ndim < 2 else 1 - wd / 2
        torch.testing.assert_close(p.detach(), mid[n] * factor)


def test_optimizers_reduce_a_loss():
    for name in OPTIMIZERS:
        model = tiny_model()
        opt = build_optimizer(OptimizerConfig(name=name, lr=3e-3), model)
        ids = torch.randint(4, 128, (2, 16))
        losses = []
        for _ in range(5):
            out = model(ids, labels=ids)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        assert losses[-1] < losses[0], (name, losses)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stable_adamw_picks_triton_on_gpu_and_matches_cpu():
    """The kernel is chosen at the first step from where the parameters are (see optim.py)."""
    cpu = tiny_model()
    gpu = copy.deepcopy(cpu).cuda()
    opt_cpu = build_optimizer(OptimizerConfig(lr=1e-2), cpu)
    opt_gpu = build_optimizer(OptimizerConfig(lr=1e-2), gpu)
    ids = torch.randint(4, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    for _ in range(3):  # the same gradients on both sides: only the kernels differ
        opt_cpu.zero_grad()
        cpu(ids, labels=ids).loss.backward()
        for p_cpu, p_gpu in zip(cpu.parameters(), gpu.parameters()):
            p_gpu.grad = p_cpu.grad.cuda()
        opt_cpu.step()
        opt_gpu.step()
    assert [(g["triton"], g["foreach"]) for g in opt_cpu.param_groups] == [(False, False)] * 2
    triton = pytest.importorskip("optimi.utils").HAS_TRITON
    assert [(g["triton"], g["foreach"]) for g in opt_gpu.param_groups] == [(triton, not triton)] * 2
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(p_gpu.cpu(), p_cpu, atol=1e-5, rtol=1e-4, msg=name)


def test_options_checked_and_unknown_name():
    with pytest.raises(ValueError, match="lr must be > 0"):
        OptimizerConfig(lr=0)
    with pytest.raises(ValueError, match="betas must be in"):
        OptimizerConfig(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"unknown optimizer 'adam'.*valid names: decoupled_adamw"):
        build_optimizer(OptimizerConfig(name="adam"), tiny_model())


def test_cpu_parameters_use_the_plain_loop_kernel():
    model = tiny_model()
    opt = build_optimizer(OptimizerConfig(), model)
    model(torch.randint(4, 128, (1, 8)), labels=torch.randint(4, 128, (1, 8))).loss.backward()
    opt.step()
    assert [(g["triton"], g["foreach"]) for g in opt.param_groups] == [(False, False)] * 2
