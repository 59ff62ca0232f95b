"""The learning-efficiency benchmark's parts: schedule, run specs, the shared evaluation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modernbert.bench.golden import golden_recipe
from modernbert.bench.quality import (
    Budget,
    PlainParts,
    logits_function,
    masked_lm_loss,
    plain_batches,
    run_overrides,
    seeded_model,
    train_plain,
    unmasked_input_ids,
)
from modernbert.bench.quality_data import eval_batches
from modernbert.bench.quality_runs import RunSpec
from modernbert.data.tokenizer import TokenSpec, load_tokenizer
from modernbert.hf.model_mapping import to_hf
from modernbert.train.config import load_recipe

DEMO = Path(__file__).resolve().parents[1] / "yamls" / "demo" / "pretrain.yaml"


def test_budget_schedule_is_warmup_then_linear_decay_to_alpha():
    b = Budget(tokens=1000, warmup_fraction=0.1, alpha_f=0.1)
    assert b.lr_multiplier(0) == 0.0
    assert b.lr_multiplier(50) == pytest.approx(0.5)
    assert b.lr_multiplier(100) == pytest.approx(1.0)
    assert b.lr_multiplier(550) == pytest.approx(0.5)
    assert b.lr_multiplier(1000) == pytest.approx(0.1)
    assert b.lr_multiplier(990) == pytest.approx(0.1)  # floored at alpha_f


def test_budget_overrides_give_the_trainer_the_same_schedule():
    b = Budget(tokens=400_000)
    cfg = load_recipe(DEMO, [*b.overrides(), "batch_size_warmup=null"])
    assert (cfg.max_duration, cfg.scheduler.t_warmup) == ("400000tok", "40000tok")
    assert (cfg.scheduler.t_decay, cfg.scheduler.alpha_f) == ("0.9dur", 0.1)
    assert cfg.scheduler.decay_shape == "linear" and cfg.max_grad_norm == 1.0


def test_shuffle_offset_sets_the_loader_seed_apart_and_keys_its_own_results(tmp_path):
    b = Budget(tokens=400_000)
    equal = load_recipe(DEMO, run_overrides(18, b, tmp_path / "m.jsonl"))
    apart = load_recipe(DEMO, run_overrides(18, b, tmp_path / "m.jsonl", shuffle_offset=1000))
    assert (equal.seed, equal.train_loader.shuffle_seed) == (18, 18)
    assert (apart.seed, apart.train_loader.shuffle_seed) == (18, 1018)
    spec = RunSpec.parse("ours")
    names = {spec.file_name(18, b, DEMO, offset) for offset in (0, 1000, 2000)}
    assert len(names) == 3
    assert spec.file_name(18, b, DEMO) == spec.file_name(18, b, DEMO, 0)


def test_ours_keeps_the_recipes_batch_size_warmup_unless_the_spec_turns_it_off(tmp_path):
    b = Budget(tokens=400_000)
    shipped = load_recipe(DEMO, run_overrides(18, b, tmp_path / "m.jsonl"))
    assert shipped.batch_size_warmup == load_recipe(DEMO).batch_size_warmup is not None
    spec = RunSpec.parse("ours:batch_size_warmup=null")
    off = load_recipe(DEMO, [*run_overrides(18, b, tmp_path / "m.jsonl"), *spec.overrides])
    assert off.batch_size_warmup is None
    assert spec.file_name(18, b, DEMO) != RunSpec.parse("ours").file_name(18, b, DEMO)


def test_run_specs_split_plain_parts_from_recipe_overrides():
    spec = RunSpec.parse("plain:model=ours;optimizer=stable_adamw;optimizer.lr=1e-3")
    assert spec.parts == PlainParts(model="ours", optimizer="stable_adamw")
    assert spec.overrides == ("optimizer.lr=1e-3",)
    assert RunSpec.parse("ours:optimizer.name=decoupled_adamw").parts is None
    with pytest.raises(ValueError, match="apply to the plain side only"):
        RunSpec.parse("ours:model=hf")
    with pytest.raises(ValueError, match="needs model=ours"):
        PlainParts(rows="packed")
    with pytest.raises(ValueError, match="unknown plain part"):
        PlainParts.parse("modle=ours")
    assert PlainParts.parse("schedule=composer").schedule == "composer"
    with pytest.raises(ValueError, match="plain schedule must be one of"):
        PlainParts(schedule="late")


def test_masked_lm_loss_is_the_mean_over_labelled_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 3], labels[1, 4] = 3, 6, 0
    batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels}
    batch["attention_mask"] = torch.ones_like(labels)
    got = masked_lm_loss(lambda ids, mask: logits, [batch])
    keep = labels != -100
    assert got == pytest.approx(float(F.cross_entropy(logits[keep], labels[keep])))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = golden_recipe(tmp_path_factory.mktemp("golden"))
    overrides = ["train_loader.max_seq_len=32", "model.max_position_embeddings=32"]
    return path, overrides, load_recipe(path, overrides)


def test_both_sides_start_from_the_same_weights_and_share_the_evaluation(golden):
    *_, cfg = golden
    tokens = TokenSpec.from_tokenizer(load_tokenizer(cfg.tokenizer))
    stream = next(iter(cfg.train_loader.streams.values()))
    val = eval_batches(stream.local, tokens, 32)
    assert val[0]["input_ids"][:, 0].eq(tokens.cls_id).all()  # one piece per row
    ours = seeded_model(cfg)
    theirs = to_hf(ours)
    ours_loss = masked_lm_loss(logits_function(ours), val)
    assert masked_lm_loss(logits_function(theirs), val) == pytest.approx(ours_loss, abs=1e-4)
    assert masked_lm_loss(logits_function(seeded_model(cfg)), val) == ours_loss


@pytest.mark.parametrize(
    "parts", [PlainParts(), PlainParts(model="ours", optimizer="stable_adamw", rows="packed")]
)
def test_plain_loop_trains_to_the_token_budget(golden, parts):
    path, overrides, _ = golden
    torch.set_num_threads(1)
    _, losses = train_plain(path, overrides, Budget(tokens=1500), parts)
    # 8 rows of at most 32 tokens a step; the packed loader ramps up from 4 rows (the golden
    # recipe's batch-size warmup), which takes a step or two more
    assert 5 <= len(losses) <= 10
    assert all(torch.isfinite(torch.tensor(losses)))


def test_unpacked_rows_are_the_loaders_documents_one_per_row(golden):
    """rows=unpacked: the packed batches' tokens, positions and masks, one document a row."""
    *_, cfg = golden
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = TokenSpec.from_tokenizer(tokenizer)
    own_masks = PlainParts(model="ours", rows="packed", masking="ours")
    packed = plain_batches(cfg, tokenizer, tokens, own_masks)
    unpacked = plain_batches(cfg, tokenizer, tokens, replace(own_masks, rows="unpacked"))
    remasked = plain_batches(
        cfg, tokenizer, tokens, replace(own_masks, rows="unpacked", masking="hf")
    )
    for _ in range(3):
        rows, docs, hf = next(packed), next(unpacked), next(remasked)
        assert (
            docs["position_ids"][:, 0].eq(0).all()
            and docs["input_ids"][:, 0].eq(tokens.cls_id).all()
        )
        # every row restarts its positions exactly once: one document
        starts = (docs["position_ids"] == 0) & docs["attention_mask"].bool()
        assert starts.sum(dim=1).eq(1).all()
        assert len(docs["input_ids"]) == int(
            ((rows["position_ids"] == 0) & rows["attention_mask"].bool()).sum()
        )
        for key in ("input_ids", "labels"):
            keep_rows, keep_docs = rows["attention_mask"].bool(), docs["attention_mask"].bool()
            assert torch.equal(rows[key][keep_rows], docs[key][keep_docs])

        # masking=hf: the same documents, masked anew by transformers' collator
        assert torch.equal(unmasked_input_ids(hf), unmasked_input_ids(docs))
        assert not torch.equal(hf["labels"], docs["labels"])


def test_loader_order_rows_are_the_loaders_pieces_a_fixed_number_a_step(golden):
    """rows=loader_order: the unpacked stream's pieces, in order, batch-size pieces a step."""
    *_, cfg = golden
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = TokenSpec.from_tokenizer(tokenizer)
    unpacked = plain_batches(cfg, tokenizer, tokens, PlainParts(rows="unpacked"))
    ordered = plain_batches(cfg, tokenizer, tokens, PlainParts(rows="loader_order"))
    loader_pieces = torch.cat([unmasked_input_ids(next(unpacked)) for _ in range(6)])
    steps = [next(ordered) for _ in range(3)]
    assert all(len(s["input_ids"]) == cfg.global_train_batch_size for s in steps)
    pieces = torch.cat([unmasked_input_ids(s) for s in steps])
    assert torch.equal(pieces, loader_pieces[: len(pieces)])
    assert all(s["labels"].ne(-100).any() for s in steps)  # masked anew
    with pytest.raises(ValueError, match="needs masking=hf"):
        next(plain_batches(cfg, tokenizer, tokens, PlainParts(rows="loader_order", masking="ours")))


def test_loader_steps_rows_are_the_plain_pieces_in_the_loaders_step_sizes(golden):
    """rows=loader_steps: the plain permutation of pieces, cut as the loader cuts its steps."""
    *_, cfg = golden
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = TokenSpec.from_tokenizer(tokenizer)
    unpacked = plain_batches(cfg, tokenizer, tokens, PlainParts(rows="unpacked"))
    plain = plain_batches(cfg, tokenizer, tokens, PlainParts())
    stepped = plain_batches(cfg, tokenizer, tokens, PlainParts(rows="loader_steps"))
    sizes = [len(next(unpacked)["input_ids"]) for _ in range(5)]
    got = [next(stepped) for _ in range(5)]
    assert [len(s["input_ids"]) for s in got] == sizes
    assert len(set(sizes)) > 1  # the golden recipe's batch-size warmup: steps of many sizes
    plain_pieces = torch.cat([unmasked_input_ids(next(plain)) for _ in range(sum(sizes))])
    pieces = torch.cat([unmasked_input_ids(s) for s in got])
    assert torch.equal(pieces, plain_pieces[: len(pieces)])
