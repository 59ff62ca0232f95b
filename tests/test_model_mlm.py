"""Masked-LM head: sparse prediction, loss, gradients, checkpointing, init."""

import math

import pytest
import torch
import torch.nn.functional as F

from modernbert.model import IGNORE_INDEX, ModernBertConfig, ModernBertForMaskedLM

VOCAB = 1007


def tiny_model(**overrides) -> ModernBertForMaskedLM:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        local_attention=8,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    values.update(overrides)
    torch.manual_seed(0)
    return ModernBertForMaskedLM(ModernBertConfig(**values)).double()


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, 20), generator=gen)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 14:] = 0
    mask[2, 6:] = 0
    labels = torch.full((3, 20), IGNORE_INDEX)
    picked = (torch.rand(3, 20, generator=gen) < 0.3) & mask.bool()
    labels[picked] = ids[picked]
    ids = ids.masked_fill(picked, 3)
    return ids, mask, labels


def test_sparse_logits_and_loss_equal_dense_head():
    model = tiny_model().eval()
    ids, mask, labels = batch()
    with torch.no_grad():
        sparse = model(ids, attention_mask=mask, labels=labels)
        dense = model(ids, attention_mask=mask).logits
    keep = labels != IGNORE_INDEX
    assert sparse.logits.shape == (int(keep.sum()), VOCAB)
    assert torch.equal(sparse.labels, labels[keep])
    torch.testing.assert_close(sparse.logits, dense[keep])
    torch.testing.assert_close(sparse.loss, F.cross_entropy(dense[keep], labels[keep]))


def test_dense_mode_returns_padded_logits_and_same_loss():
    ids, mask, labels = batch()
    sparse = tiny_model().eval()(ids, attention_mask=mask, labels=labels)
    dense = tiny_model(sparse_prediction=False).eval()(ids, attention_mask=mask, labels=labels)
    assert dense.logits.shape == (3, 20, VOCAB) and torch.equal(dense.labels, labels)
    torch.testing.assert_close(dense.loss, sparse.loss)


def test_no_labelled_position_gives_zero_loss_not_nan():
    model = tiny_model()
    ids, mask, _ = batch()
    out = model(ids, attention_mask=mask, labels=torch.full_like(ids, IGNORE_INDEX))
    assert out.loss.item() == 0.0 and out.logits.shape == (0, VOCAB)
    out.loss.backward()


def loss_and_grads(model, seed=0):
    ids, mask, labels = batch(seed)
    model.zero_grad()
    loss = model(ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradients_reach_every_parameter():
    _, grads = loss_and_grads(tiny_model(attention_bias=True, mlp_bias=True).train())
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gradient_checkpointing_gives_same_loss_and_grads(dropout):
    drop = dict(embedding_dropout=dropout, attention_dropout=dropout, mlp_dropout=dropout)
    torch.manual_seed(1)
    loss, grads = loss_and_grads(tiny_model(**drop).train())
    torch.manual_seed(1)
    loss_ckpt, grads_ckpt = loss_and_grads(tiny_model(gradient_checkpointing=True, **drop).train())
    torch.testing.assert_close(loss_ckpt, loss)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], msg=name)


def test_labels_shape_must_match():
    ids, mask, labels = batch()
    with pytest.raises(ValueError, match="labels shape"):
        tiny_model()(ids, attention_mask=mask, labels=labels[:, :5])


def test_megatron_init():
    cfg = ModernBertConfig(
        hidden_size=256,
        intermediate_size=384,
        num_attention_heads=4,
        num_hidden_layers=8,
        vocab_size=2048,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    torch.manual_seed(0)
    model = ModernBertForMaskedLM(cfg)
    std_in, std_out = 0.02, 0.02 / math.sqrt(16)
    emb = model.model.embeddings.tok_embeddings.weight
    assert model.decoder.weight is emb  # tied
    layer = model.model.layers[3]
    for weight, std in [
        (emb, std_in),
        (layer.attn.Wqkv.weight, std_in),
        (layer.mlp.Wi.weight, std_in),
        (layer.attn.Wo.weight, std_out),
        (layer.mlp.Wo.weight, std_out),
    ]:
        assert weight.abs().max() <= 2 * std + 1e-9  # truncated at cutoff_factor * std
        # a normal truncated at 2 std has std 0.88 of the untruncated one
        assert weight.std().item() == pytest.approx(0.88 * std, rel=0.05)
    assert torch.equal(model.decoder.bias, torch.zeros(2048))
    assert torch.equal(layer.mlp_norm.weight, torch.ones(256)) and layer.mlp_norm.bias is None
