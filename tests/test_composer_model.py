"""The ComposerModel: loss is the model's sparse MLM loss, metrics count masked positions only,
and sparse and dense heads give the same metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modernbert.data.flat import FlatBatchBuilder
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.composer_model import (
    PADDED_INPUT_KEYS,
    ComposerMLM,
    MaskedAccuracy,
    MaskedCrossEntropy,
)

CONFIG = ModernBertConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    local_attention=16,
    pad_token_id=0,
    cls_token_id=2,
    sep_token_id=3,
    mask_token_id=4,
)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two packed rows (two documents in the first), padding at the end, ~30% labelled."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 128, (2, 24), generator=gen)
    attention = torch.ones(2, 24, dtype=torch.long)
    attention[1, 18:] = 0
    ids[1, 18:] = 0
    positions = torch.cat([torch.arange(10), torch.arange(14)]).repeat(2, 1)
    positions[1] = torch.arange(24) * attention[1]
    labels = torch.full((2, 24), -100)
    chosen = (torch.rand(2, 24, generator=gen) < 0.3) & attention.bool()
    labels[chosen] = ids[chosen]
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "position_ids": positions,
        "labels": labels,
    }


def _metric_values(model: ComposerMLM, batch) -> tuple[float, float]:
    outputs = model(batch)
    acc, ce = MaskedAccuracy(), MaskedCrossEntropy()
    model.update_metric(batch, outputs, acc)
    model.update_metric(batch, outputs, ce)
    return float(acc.compute()), float(ce.compute())


def test_loss_and_metrics_cover_masked_positions_only():
    torch.manual_seed(0)
    model = ComposerMLM(ModernBertForMaskedLM(CONFIG)).eval()
    batch = _batch()
    with torch.no_grad():
        outputs = model(batch)
        assert model.loss(outputs, batch) is outputs.loss
        acc, ce = _metric_values(model, batch)
        dense = model.model(
            batch["input_ids"], batch["attention_mask"], batch["position_ids"]
        ).logits
    keep = batch["labels"] != -100
    expected_ce = F.cross_entropy(dense[keep], batch["labels"][keep])
    expected_acc = (dense[keep].argmax(-1) == batch["labels"][keep]).float().mean()
    assert outputs.logits.shape[0] == int(keep.sum())
    assert ce == pytest.approx(float(expected_ce), abs=1e-5)
    assert ce == pytest.approx(float(outputs.loss), abs=1e-5)
    assert acc == pytest.approx(float(expected_acc), abs=1e-6)


def test_dense_head_gives_the_same_metrics_as_sparse():
    torch.manual_seed(0)
    sparse = ComposerMLM(ModernBertForMaskedLM(CONFIG)).eval()
    dense = ComposerMLM(
        ModernBertForMaskedLM(dataclasses.replace(CONFIG, sparse_prediction=False))
    ).eval()
    dense.load_state_dict(sparse.state_dict())
    batch = _batch(1)
    with torch.no_grad():
        assert _metric_values(dense, batch) == pytest.approx(
            _metric_values(sparse, batch), abs=1e-5
        )


def test_metrics_accumulate_token_weighted_across_batches():
    ce = MaskedCrossEntropy()
    logits = torch.zeros(3, 4)
    ce.update(logits[:1], torch.tensor([1]))
    ce.update(logits[1:], torch.tensor([2, -100]))
    # two labelled tokens, each with loss log(4); the -100 row does not count
    assert float(ce.compute()) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    acc = MaskedAccuracy()
    acc.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, -100]))
    assert float(acc.compute()) == 1.0


def test_eval_forward_reuses_training_outputs_and_no_train_metrics():
    model = ComposerMLM(ModernBertForMaskedLM(CONFIG))
    sentinel = object()
    assert model.eval_forward(_batch(), sentinel) is sentinel
    train, evaluation = model.get_metrics(is_train=True), model.get_metrics(is_train=False)
    assert train == {}  # the training forward has no logits; the loss is logged anyway
    assert set(evaluation) == {"MaskedAccuracy", "MaskedCrossEntropy"}


def _flat(batch: dict[str, torch.Tensor]) -> dict:
    """The same rows as a flat batch, as the loader builds it (data/flat.py)."""
    builder = FlatBatchBuilder(batch["input_ids"].shape[1])
    for ids, mask, pos, labels in zip(
        *(batch[k] for k in PADDED_INPUT_KEYS[:2]), batch["position_ids"], batch["labels"]
    ):
        n = int(mask.sum())
        starts = [*(pos[:n] == 0).nonzero().flatten().tolist(), n]
        seqlens = np.diff(starts)
        builder.add_row(ids[:n].numpy(), seqlens, labels[:n].numpy())
    return builder.build()


def test_flat_batch_gives_the_padded_batch_metrics_and_loss():
    torch.manual_seed(0)
    model = ComposerMLM(ModernBertForMaskedLM(CONFIG)).eval()
    padded, flat = _batch(), _flat(_batch())
    assert int(flat["layout"].num_docs) == 3
    with torch.no_grad():
        assert _metric_values(model, flat) == pytest.approx(_metric_values(model, padded), abs=1e-5)
        assert float(model.loss(model(flat), flat)) == pytest.approx(
            float(model.loss(model(padded), padded)), abs=1e-5
        )
    model.train()
    loss = model.loss(model(flat), flat)  # training: chunked loss, no logits needed
    loss.backward()
    assert float(loss) == pytest.approx(float(model.loss(model(padded), padded)), abs=1e-5)
    with pytest.raises(ValueError, match="no logits"):
        model.update_metric(flat, model(flat), MaskedAccuracy())


SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "item", "is_nonzero")


def test_metric_updates_make_no_device_sync():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Syncs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            bool_index = name == "index" and any(
                isinstance(t, torch.Tensor) and t.dtype == torch.bool
                for t in args[1]
                if t is not None
            )
            if name in SYNC_OPS or bool_index:
                self.seen.append(name)
            return func(*args, **(kwargs or {}))

    logits, labels = torch.randn(6, 10), torch.tensor([1, -100, 3, 4, -100, 0])
    with Syncs() as mode:
        for metric in (MaskedAccuracy(), MaskedCrossEntropy()):
            metric.update(logits, labels)
    assert mode.seen == []


def test_batch_without_labels_is_refused():
    model = ComposerMLM(ModernBertForMaskedLM(CONFIG))
    batch = _batch()
    del batch["labels"]
    with pytest.raises(ValueError, match="labels"):
        model(batch)


def test_fsdp_and_activation_checkpointing_units_are_the_encoder_layers():
    from modernbert.model.layers import EncoderLayer

    model = ComposerMLM(ModernBertForMaskedLM(CONFIG))
    units = [m for m in model.model.modules() if model.model.fsdp_wrap_fn(m)]
    assert len(units) == CONFIG.num_hidden_layers
    assert all(isinstance(m, EncoderLayer) for m in units)
    assert not model.model.activation_checkpointing_fn(model.model.model.embeddings)
