"""Exact parity with transformers' ModernBertForMaskedLM (fp32, CPU) in both directions."""

import random

import pytest
import torch
import transformers

from modernbert.hf import config_from_hf, from_hf, hf_config, to_hf
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM

SEQ = 40


def random_config(seed: int) -> ModernBertConfig:
    """Small configs covering every switch that changes the computation."""
    rng = random.Random(seed)
    heads = rng.choice([2, 4])
    return ModernBertConfig(
        vocab_size=rng.choice([1000 + 7, 1024, 999]),
        hidden_size=heads * rng.choice([8, 16]),
        intermediate_size=rng.choice([24, 40, 64]),
        num_hidden_layers=rng.choice([2, 3, 4]),
        num_attention_heads=heads,
        global_attn_every_n_layers=[1, 2, 3][seed % 3],
        local_attention=rng.choice([4, 6, 10, 16]),  # all smaller than the sequences
        global_rope_theta=rng.choice([10000.0, 160000.0]),
        local_rope_theta=rng.choice([10000.0, 500.0]),
        norm_eps=rng.choice([1e-5, 1e-6]),
        norm_bias=rng.random() < 0.5,
        attention_bias=rng.random() < 0.5,
        mlp_bias=rng.random() < 0.5,
        decoder_bias=rng.random() < 0.7,
        classifier_bias=rng.random() < 0.5,
        hidden_activation=rng.choice(["gelu", "gelu", "gelu_pytorch_tanh", "silu"]),
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )


def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Make norms, biases and weights all non-trivial so a misplaced one shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))


def padded_batch(vocab: int, seed: int):
    """Rows of different lengths, right-padded (what transformers users feed)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [SEQ, 23, 7, 1, 31]
    ids = torch.randint(4, vocab, (len(lengths), SEQ), generator=gen)
    mask = torch.zeros(len(lengths), SEQ, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids.masked_fill(mask == 0, 0), mask


def assert_same_logits(ours: ModernBertForMaskedLM, theirs, seed: int) -> None:
    ids, mask = padded_batch(ours.config.vocab_size, seed)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = theirs(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    diff = (a[real] - b[real]).abs().max().item()
    assert diff <= 1e-4, f"max abs logit difference {diff:.3g}"


@pytest.mark.parametrize("seed", range(6))
def test_ours_to_hf_same_logits(seed):
    torch.manual_seed(seed)
    ours = ModernBertForMaskedLM(random_config(seed)).eval()
    perturb_(ours, seed)
    hf_model = to_hf(ours, attn_implementation="eager" if seed % 2 else "sdpa").eval()
    assert_same_logits(ours, hf_model, seed)
    # ...and back: exactly the state dict we started from.
    back = from_hf(hf_model)
    assert back.config == ours.config
    ours_sd, back_sd = ours.state_dict(), back.state_dict()
    assert ours_sd.keys() == back_sd.keys()
    for key, value in ours_sd.items():
        assert torch.equal(value, back_sd[key]), key


@pytest.mark.parametrize("seed", range(3))
def test_hf_to_ours_same_logits(seed):
    """Start from a model transformers initialised itself, from its own config class."""
    cfg = random_config(100 + seed)
    hf_cfg = transformers.ModernBertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        global_attn_every_n_layers=cfg.global_attn_every_n_layers,
        local_attention=cfg.local_attention,
        global_rope_theta=cfg.global_rope_theta,
        local_rope_theta=None if seed == 0 else cfg.local_rope_theta,  # None: falls back to global
        norm_bias=cfg.norm_bias,
        mlp_bias=cfg.mlp_bias,
        hidden_activation=cfg.hidden_activation,
        classifier_activation=cfg.hidden_activation,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    hf_model = transformers.ModernBertForMaskedLM(hf_cfg).eval()
    perturb_(hf_model, seed)
    ours = from_hf(hf_model, mask_token_id=3).eval()
    assert ours.config.local_rope_theta == (
        cfg.global_rope_theta if seed == 0 else cfg.local_rope_theta
    )
    assert_same_logits(ours, hf_model, seed)


def test_config_maps_field_by_field():
    cfg = random_config(7)
    mapped = hf_config(cfg)
    assert mapped.classifier_activation == cfg.hidden_activation and mapped.tie_word_embeddings
    assert (mapped.bos_token_id, mapped.eos_token_id) == (cfg.cls_token_id, cfg.sep_token_id)
    assert config_from_hf(mapped) == cfg
    assert config_from_hf(mapped, attn_backend="auto").attn_backend == "auto"


def test_unsupported_hf_configs_are_refused():
    cfg = hf_config(random_config(1))
    cfg.classifier_activation = "relu"
    with pytest.raises(ValueError, match="classifier_activation"):
        config_from_hf(cfg)
    cfg = hf_config(random_config(1))
    cfg.rope_scaling = {"rope_type": "linear", "factor": 2.0}
    with pytest.raises(ValueError, match="rope_scaling"):
        config_from_hf(cfg)
    with pytest.raises(ValueError, match="ModernBertForMaskedLM"):
        from_hf(transformers.ModernBertModel(hf_config(random_config(1))))
