"""The cluster recipes carry the ModernBERT paper's training settings, phase by phase.

The table below is written from the sources, not from our YAML: the paper (arXiv 2412.13663,
training settings) and the reference configs it released (AnswerDotAI/ModernBERT, branch
pretraining_documentation, yamls/modernbert/*.yaml). Each recipe is loaded (with its parts)
and compared with its row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from composer.core import Time

from modernbert.train.config import load_recipe

YAMLS = Path(__file__).resolve().parents[1] / "yamls"
B = 1_000_000_000

# recipe -> (peak LR, weight decay, tokens, global batch, LR warmup tokens,
#            batch-size warmup (start rows, tokens) or None, sequence length,
#            (global, local) RoPE theta, LR decay shape over the whole phase or None,
#            optimizer state carried over from the previous phase)
PAPER = {
    "pretrain_base": (
        8e-4,
        1e-5,
        1719 * B,
        4608,
        3 * B,
        (768, 50 * B),
        1024,
        (1e4, 1e4),
        None,
        False,
    ),
    "pretrain_large": (
        5e-4,
        1e-5,
        900 * B,
        4928,
        2 * B,
        (448, 10 * B),
        1024,
        (1e4, 1e4),
        None,
        False,
    ),
    "pretrain_large_lr_drop": (5e-5, 1e-6, 819 * B, 4928, 0, None, 1024, (1e4, 1e4), None, True),
    "context_extension_base": (3e-4, 1e-5, 250 * B, 576, 0, None, 8192, (1.6e5, 1e4), None, True),
    "context_extension_large": (5e-5, 1e-6, 250 * B, 616, 0, None, 8192, (1.6e5, 1e4), None, True),
    "decay_base": (3e-4, 1e-5, 50 * B, 576, 0, None, 8192, (1.6e5, 1e4), "1-sqrt", True),
    "decay_large": (5e-5, 1e-6, 50 * B, 624, 0, None, 8192, (1.6e5, 1e4), "1-sqrt", True),
}
ARCHITECTURE = {  # layers, hidden, GeGLU width, heads, vocab, window, global every
    "base": (22, 768, 1152, 12, 50368, 128, 3),
    "large": (28, 1024, 2624, 16, 50368, 128, 3),
}


def _tokens(duration: str) -> int:
    t = Time.from_timestring(duration)
    assert t.unit.value == "tok", duration
    return int(t.value)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_has_the_papers_settings(name):
    lr, wd, tokens, batch, warmup, bs_warmup, seq, thetas, decay, keeps_optimizer = PAPER[name]
    cfg = load_recipe(YAMLS / f"{name}.yaml", world_size=8)
    assert cfg.optimizer.name == "stable_adamw"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (lr, wd)
    assert (tuple(cfg.optimizer.betas), cfg.optimizer.eps) == ((0.9, 0.98), 1e-6)
    assert _tokens(cfg.max_duration) == tokens
    assert cfg.global_train_batch_size == batch
    assert _tokens(cfg.scheduler.t_warmup) == warmup
    if bs_warmup is None:
        assert cfg.batch_size_warmup is None
    else:
        start, over = bs_warmup
        assert (cfg.batch_size_warmup.start_batch_size, cfg.batch_size_warmup.warmup_tokens) == (
            start,
            over,
        )
    assert cfg.train_loader.max_seq_len == cfg.eval_loader.max_seq_len == seq
    assert (cfg.model.global_rope_theta, cfg.model.local_rope_theta) == thetas
    assert (cfg.train_loader.mlm_probability, cfg.eval_loader.mlm_probability) == (0.3, 0.15)
    if decay is None:  # warmup then constant: the decay is a phase of its own
        assert Time.from_timestring(cfg.scheduler.t_decay).value == 0
    else:
        assert (cfg.scheduler.decay_shape, cfg.scheduler.t_decay) == (decay, "1dur")
        assert cfg.scheduler.alpha_f == 0.001
    kept = cfg.init_from is not None and not cfg.init_from.reset_optimizer
    assert kept == keeps_optimizer
    assert cfg.max_grad_norm is None and cfg.compile


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_has_the_papers_architecture(name):
    cfg = load_recipe(YAMLS / f"{name}.yaml", world_size=8)
    m = cfg.model
    got = (
        m.num_hidden_layers,
        m.hidden_size,
        m.intermediate_size,
        m.num_attention_heads,
        m.vocab_size,
        m.local_attention,
        m.global_attn_every_n_layers,
    )
    assert got == ARCHITECTURE["large" if "large" in name else "base"]


def test_large_continues_from_the_lr_drop_and_starts_tiled_from_base():
    large = load_recipe(YAMLS / "pretrain_large.yaml", world_size=8)
    drop = load_recipe(YAMLS / "pretrain_large_lr_drop.yaml", world_size=8)
    context = load_recipe(YAMLS / "context_extension_large.yaml", world_size=8)
    base = load_recipe(YAMLS / "pretrain_base.yaml", world_size=8)
    assert (large.init_from.mode, large.init_from.path) == ("tile", base.save_folder)
    assert drop.init_from.path == large.save_folder
    assert context.init_from.path == drop.save_folder
    # 900B at 5e-4, then the rest of the 1.719T at 5e-5
    assert _tokens(large.max_duration) + _tokens(drop.max_duration) == 1719 * B
