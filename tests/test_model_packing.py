"""Unpadding and packing: packed rows, flat tokens and lone documents give the same logits,
and documents in one row never see each other."""

import pytest
import torch

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM, ModernBertModel
from modernbert.model.varlen import to_varlen

VOCAB = 1007


def tiny_model(**overrides) -> ModernBertForMaskedLM:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        local_attention=6,
        global_attn_every_n_layers=2,
        local_rope_theta=500.0,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    values.update(overrides)
    torch.manual_seed(0)
    return ModernBertForMaskedLM(ModernBertConfig(**values)).double().eval()


def make_docs(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(5, VOCAB, (n,), generator=gen) for n in lengths]


def pack(rows, width, pad_id=0):
    """[B, width] rows of back-to-back documents, position_ids restarting at each."""
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    for r, docs in enumerate(rows):
        start = 0
        for doc in docs:
            ids[r, start : start + len(doc)] = doc
            mask[r, start : start + len(doc)] = 1
            pos[r, start : start + len(doc)] = torch.arange(len(doc))
            start += len(doc)
    return ids, mask, pos


def alone(model, doc):
    with torch.no_grad():
        return model(doc[None]).logits[0]


# Lengths around the window (6), the block size and the buckets; one doc of length 1.
ROWS = [[17, 3, 9], [1, 30], [25]]


@pytest.mark.parametrize("local_blocks", [True, False])  # blocked / band-masked local layers
def test_packed_rows_equal_documents_alone(monkeypatch, local_blocks):
    from modernbert.model.attention import resolve_backend

    monkeypatch.setattr(resolve_backend("sdpa", torch.device("cpu")), "local_blocks", local_blocks)
    model = tiny_model()
    docs = make_docs([n for row in ROWS for n in row])
    it = iter(docs)
    rows = [[next(it) for _ in row] for row in ROWS]
    ids, mask, pos = pack(rows, width=34)
    with torch.no_grad():
        packed = model(ids, attention_mask=mask, position_ids=pos).logits
    assert packed.shape == (3, 34, VOCAB)
    for r, row in enumerate(rows):
        start = 0
        for doc in row:
            torch.testing.assert_close(packed[r, start : start + len(doc)], alone(model, doc))
            start += len(doc)
        assert packed[r, start:].abs().sum() == 0  # padding positions come back as zeros


def test_flat_tokens_with_cu_seqlens_equal_packed_rows():
    model = tiny_model()
    docs = make_docs([17, 3, 9, 1, 30])
    flat = torch.cat(docs)
    lengths = torch.tensor([len(d) for d in docs])
    cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to(torch.int32)
    with torch.no_grad():
        out = model(flat, cu_seqlens=cu, max_seqlen=30).logits
        hidden = model.model(flat, cu_seqlens=cu)
    assert out.shape == (len(flat), VOCAB) and hidden.shape == (len(flat), 64)
    start = 0
    for doc in docs:
        torch.testing.assert_close(out[start : start + len(doc)], alone(model, doc))
        start += len(doc)


@pytest.mark.parametrize("every_n", [1, 2, 3])
def test_documents_do_not_attend_to_each_other(every_n):
    model = tiny_model(global_attn_every_n_layers=every_n, num_hidden_layers=3)
    first, second = make_docs([12, 20])
    changed = torch.randint(5, VOCAB, (12,), generator=torch.Generator().manual_seed(9))
    outs = []
    for doc in (first, changed):
        ids, mask, pos = pack([[doc, second]], width=36)
        with torch.no_grad():
            outs.append(model(ids, attention_mask=mask, position_ids=pos).logits[0])
    assert not torch.allclose(outs[0][:12], outs[1][:12])  # doc 1 changed...
    torch.testing.assert_close(outs[0][12:32], outs[1][12:32], rtol=0, atol=0)  # ...doc 2 did not


def test_local_layers_see_only_their_window():
    """Layer 0 is always global; the local layers after it reach half a window per layer."""
    from modernbert.model.attention import resolve_backend
    from modernbert.model.layers import AttentionContext

    model = tiny_model(global_attn_every_n_layers=100, local_attention=4)
    local_layers = model.model.layers[1:]  # layers 1 and 2: local, half window 2
    hidden = torch.randn(30, 64, dtype=torch.float64)
    _, varlen = to_varlen(torch.zeros(1, 30, dtype=torch.long))
    ctx = AttentionContext(
        varlen, resolve_backend("sdpa", hidden.device), head_dim=16, dtype=hidden.dtype
    )

    def run(x):
        with torch.no_grad():
            for layer in local_layers:
                x = layer(x, ctx)
        return x

    edited = hidden.clone()
    edited[29] += torch.randn(64, dtype=torch.float64)  # not constant: LayerNorm removes that
    a, b = run(hidden), run(edited)
    # Two local layers of half-window 2: position 29 reaches down to 25, not below.
    torch.testing.assert_close(a[:25], b[:25], rtol=0, atol=0)
    assert not torch.allclose(a[25], b[25])


def test_unpadding_derives_documents_from_position_resets():
    ids = torch.arange(1, 11).view(2, 5)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    pos = torch.tensor([[0, 1, 0, 1, 0], [0, 1, 2, 0, 1]])
    flat, varlen = to_varlen(ids, mask, pos)
    assert flat.tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert varlen.cu_seqlens.tolist() == [0, 2, 4, 7, 9]
    assert varlen.positions.tolist() == [0, 1, 0, 1, 0, 1, 2, 0, 1]
    assert varlen.max_seqlen == 3
    # Without position_ids each row is one document.
    _, varlen = to_varlen(ids, mask)
    assert varlen.cu_seqlens.tolist() == [0, 4, 9]


def test_bare_encoder_repads_hidden_states():
    model = tiny_model()
    ids, mask, pos = pack([make_docs([5, 4]), make_docs([7])], width=10)
    with torch.no_grad():
        hidden = ModernBertModel.forward(model.model, ids, mask, pos)
    assert hidden.shape == (2, 10, 64)
    assert hidden[0, 9].abs().sum() == 0 and hidden[0, 8].abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_ids": torch.zeros(4, dtype=torch.long)}, "cu_seqlens is required"),
        (
            {"input_ids": torch.zeros(4, dtype=torch.long), "cu_seqlens": torch.tensor([0, 3])},
            "int32",
        ),
        (
            {
                "input_ids": torch.zeros(4, dtype=torch.long),
                "cu_seqlens": torch.tensor([0, 3], dtype=torch.int32),
            },
            "end at T=4",
        ),
        (
            {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 3)},
            "attention_mask shape",
        ),
        (
            {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.zeros(2, 4)},
            "selects no token",
        ),
        ({"input_ids": torch.zeros(1, 2, 4, dtype=torch.long)}, r"\[B, L\] or \[T\]"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(**kwargs)
