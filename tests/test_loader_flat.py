"""The loader's flat batches: the same tokens and masks as the padded rows they replace, with
host-side offsets that cut microbatches by rows without reading any tensor's values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modernbert.data import (
    IGNORE_INDEX,
    BatchSizeWarmup,
    FlatLayout,
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
    composer_token_counts,
    num_samples_in_batch,
    num_tokens_in_batch,
    padded_rows,
    split_flat_batch,
)
from modernbert.data.flat import TENSOR_KEYS, model_inputs
from modernbert.data.synthetic import lognormal_lengths, random_documents, write_mds_documents
from modernbert.data.tokenizer import TokenSpec

SEQ = 64
VOCAB = 300
TOKENS = TokenSpec(
    cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=VOCAB
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    lengths = lognormal_lengths(250, rng, median=25, sigma=1.0, cap=300)  # some span rows
    path = tmp_path_factory.mktemp("flat")
    write_mds_documents(path / "train", random_documents(lengths, rng, low=5, high=VOCAB))
    return path


def _loader(root: Path, **kwargs):
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(root))},
        max_seq_len=SEQ,
        packing_window=64,
        mlm_probability=0.3,
    )
    return build_mlm_dataloader(cfg, TOKENS, 8, seed=5, world_size=1, rank=0, **kwargs)


def _padded_reference(dataset, epoch: int, first_row: int, n_rows: int) -> dict:
    """The `[B, L]` batch as the loader built it before the flat form (the padded collate of
    docs/interfaces.md section 3 until issue 9), written out independently here."""
    docs, plan = dataset._plan(epoch)
    shape = (n_rows, SEQ)
    ids = np.full(shape, TOKENS.pad_id, dtype=np.int64)
    mask = np.zeros(shape, dtype=np.int64)
    pos = np.zeros(shape, dtype=np.int64)
    labels = np.full(shape, IGNORE_INDEX, dtype=np.int64)
    for i, (doc, start, length) in enumerate(plan.rows(first_row, first_row + n_rows)):
        c = 0
        for d, s, n in zip(doc.tolist(), start.tolist(), length.tolist()):
            ids[i, c] = TOKENS.cls_id
            ids[i, c + 1 : c + 1 + n] = dataset.source.read(int(docs[d]))[s : s + n]
            ids[i, c + 1 + n] = TOKENS.sep_id
            pos[i, c : c + n + 2] = np.arange(n + 2)
            c += n + 2
        mask[i, :c] = 1
        rng = dataset.masker.row_rng(dataset.seed, epoch, first_row + i)
        labels[i] = dataset.masker.mask_row(ids[i], rng)
    names = ("input_ids", "attention_mask", "position_ids", "labels")
    return {k: torch.from_numpy(v) for k, v in zip(names, (ids, mask, pos, labels))}


def test_flat_batches_equal_the_padded_rows_token_for_token(root):
    warmup = BatchSizeWarmup(start_batch_size=1, warmup_tokens=SEQ * 30)
    loader = _loader(root, batch_size_warmup=warmup)
    dataset = loader.dataset
    compared = 0
    for epoch in range(2):
        batches = list(loader)
        layout = list(dataset._layout(epoch))
        assert len(batches) == len(layout)
        for batch, (_, first, size) in zip(batches, layout):
            expected = _padded_reference(dataset, epoch, first, size)
            got = padded_rows(batch, TOKENS.pad_id)
            for key, value in expected.items():
                assert torch.equal(got[key], value), (epoch, first, key)
            compared += int((value != IGNORE_INDEX).sum())
    assert compared > 1000  # masked tokens compared, warmup batches included


def test_padded_rows_per_document_give_each_document_its_own_row(root):
    for batch in _loader(root):
        layout: FlatLayout = batch["layout"]
        packed = padded_rows(batch, TOKENS.pad_id)
        rows = padded_rows(batch, TOKENS.pad_id, per_document=True)
        assert len(rows["input_ids"]) == len(layout.seqlens) > layout.num_rows
        # one document a row: [CLS] at position 0, its positions 0..n-1, nothing after [SEP]
        lengths = rows["attention_mask"].sum(1)
        assert lengths.tolist() == layout.seqlens.tolist()
        assert (rows["input_ids"][:, 0] == TOKENS.cls_id).all()
        for row, n in zip(rows["position_ids"], lengths.tolist()):
            assert row[:n].tolist() == list(range(n))
        # the same tokens and labels as the packed rows, in the same order
        for key in ("input_ids", "labels", "position_ids"):
            real_packed = packed[key][packed["attention_mask"].bool()]
            assert torch.equal(rows[key][rows["attention_mask"].bool()], real_packed), key


def test_flat_batch_fields_agree(root):
    for batch in _loader(root):
        layout: FlatLayout = batch["layout"]
        ids, cu, pos = batch["input_ids"], batch["cu_seqlens"], batch["position_ids"]
        assert ids.dtype == pos.dtype == torch.int64 and ids.dim() == 1
        assert cu.dtype == torch.int32 and layout.seqlens.dtype == np.int32
        assert cu.tolist() == [0, *np.cumsum(layout.seqlens).tolist()]
        assert layout.max_seqlen == int(np.diff(cu.numpy()).max()) <= SEQ
        # positions restart at every document; every document is [CLS] ... [SEP]
        starts, ends = cu[:-1].long(), cu[1:].long() - 1
        assert (pos[starts] == 0).all() and (ids[starts] == TOKENS.cls_id).all()
        assert (ids[ends] == TOKENS.sep_id).all()
        assert int((pos == 0).sum()) == len(layout.seqlens)
        # masked positions: sorted, inside the tokens, never a special token's label
        masked, labels = batch["masked_positions"], batch["masked_labels"]
        assert masked.dtype == labels.dtype == torch.int64
        assert (masked.diff() > 0).all() and int(masked.max()) < len(ids)
        assert (labels >= 5).all() and len(labels) == layout.num_masked
        # row offsets: tokens, documents and masks of each row
        assert layout.num_rows == num_samples_in_batch(batch) == 8
        assert layout.num_tokens == num_tokens_in_batch(batch) == len(ids)
        assert composer_token_counts(batch) == {"total": len(ids), "loss_generating": len(labels)}
        row_docs = np.searchsorted(cu.numpy(), layout.row_tokens)
        assert np.array_equal(row_docs, layout.row_docs)
        assert (np.diff(layout.row_tokens) <= SEQ).all()


def test_split_cuts_rows_and_rebases_offsets(root):
    batch = next(iter(_loader(root)))
    layout: FlatLayout = batch["layout"]
    parts = split_flat_batch(batch, 3)
    assert [p["layout"].num_rows for p in parts] == [3, 3, 2]
    for p in parts:
        n = p["layout"].num_tokens
        assert len(p["input_ids"]) == n and int(p["cu_seqlens"][-1]) == n
        assert int(p["cu_seqlens"][0]) == 0 and p["cu_seqlens"].dtype == torch.int32
        assert p["layout"].row_tokens[0] == 0 and p["layout"].row_tokens[-1] == n
        assert bool((p["masked_positions"] < n).all()) and bool((p["masked_positions"] >= 0).all())
        # the microbatch's masked tokens are where its labels say
        flat = padded_rows(p, TOKENS.pad_id)
        assert int((flat["labels"] != IGNORE_INDEX).sum()) == p["layout"].num_masked
    # Joined back, the microbatches are the batch: same tokens, documents and masks.
    for key in ("input_ids", "position_ids", "masked_labels"):
        assert torch.equal(torch.cat([p[key] for p in parts]), batch[key])
    offsets = np.cumsum([0, *[p["layout"].num_tokens for p in parts[:-1]]])
    masked = torch.cat([p["masked_positions"] + int(o) for p, o in zip(parts, offsets)])
    assert torch.equal(masked, batch["masked_positions"])
    seqlens = np.concatenate([p["layout"].seqlens for p in parts])
    assert np.array_equal(seqlens, layout.seqlens)
    assert sum(p["layout"].num_masked for p in parts) == layout.num_masked
    assert split_flat_batch(batch, 8) == [batch] and split_flat_batch(batch, 100) == [batch]
    with pytest.raises(ValueError, match="microbatch size must be >= 1"):
        split_flat_batch(batch, 0)


def test_model_inputs_are_exactly_the_contract(root):
    batch = next(iter(_loader(root)))
    inputs = model_inputs(batch)
    assert set(inputs) == {*TENSOR_KEYS, "max_seqlen", "seqlens_host"}
    assert isinstance(inputs["max_seqlen"], int)
    host = inputs["seqlens_host"]
    assert host.device.type == "cpu" and host.dtype == torch.int32
    assert torch.equal(host, batch["cu_seqlens"].diff())
    with pytest.raises(ValueError, match="not a flat batch"):
        model_inputs({"input_ids": batch["input_ids"]})
