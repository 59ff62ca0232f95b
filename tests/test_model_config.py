"""ModernBertConfig: defaults, validation messages, dict round trip."""

import pytest

from modernbert.model import ModernBertConfig


def test_defaults_are_modernbert_base():
    cfg = ModernBertConfig()
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (50368, 768, 1152)
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim) == (22, 12, 64)
    assert (cfg.cls_token_id, cfg.sep_token_id, cfg.pad_token_id, cfg.mask_token_id) == (
        50281,
        50282,
        50283,
        50284,
    )
    assert [cfg.is_global_layer(i) for i in range(4)] == [True, False, False, True]


def test_dict_round_trip():
    cfg = ModernBertConfig(hidden_size=64, num_attention_heads=4, attn_backend="auto")
    assert ModernBertConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_rejects_unknown_key_with_hint():
    with pytest.raises(ValueError, match=r"'hiden_size'.*did you mean 'hidden_size'"):
        ModernBertConfig.from_dict({"hiden_size": 64})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_size": 66, "num_attention_heads": 4}, "hidden_size"),
        ({"hidden_size": 60, "num_attention_heads": 4}, "head dim"),
        ({"local_attention": 127}, "local_attention"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"num_hidden_layers": -1}, "num_hidden_layers"),
        ({"intermediate_size": 2.5}, "intermediate_size"),
        ({"global_attn_every_n_layers": 0}, "global_attn_every_n_layers"),
        ({"vocab_size": 1000}, "pad_token_id"),
        ({"mask_token_id": -3}, "mask_token_id"),
        ({"attn_backend": "xformers"}, "attn_backend.*sdpa, flash_attn, flex, auto"),
        ({"hidden_activation": "swish"}, "hidden_activation.*gelu"),
        ({"attention_dropout": 1.0}, "attention_dropout"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"global_rope_theta": -1.0}, "global_rope_theta"),
        ({"sparse_prediction": "yes"}, "sparse_prediction"),
    ],
)
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ModernBertConfig(**overrides)
