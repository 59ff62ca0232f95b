"""init_from: {hf: ...}: continue a stock transformers ModernBERT (custom vocabulary, saved
locally) on our shards, export it, and load it back in stock transformers with our logits;
a wrong tokenizer or out-of-range token ids stop the run at the door with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import read_losses, tiny_recipe, write_recipe

HF_VOCAB = 520  # not a multiple of 64, and larger than the tokenizer (512 tokens)


def save_stock_model(folder: Path, tokenizer: Path | None, vocab_size: int = HF_VOCAB) -> Path:
    """A stock transformers ModernBERT with its default cls/sep ids (50k-vocab values,
    meaningless here) and no mask id, as `ModernBertConfig(...)` + `save_pretrained` give.
    (transformers itself needs the pad id inside the vocabulary: our tokenizers' [PAD] is 0.)"""
    import transformers

    config = transformers.ModernBertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        local_attention=32,
        global_attn_every_n_layers=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.ModernBertForMaskedLM(config).save_pretrained(folder)
    if tokenizer is not None:
        transformers.AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    return folder


def hf_recipe(corpus, run_dir: Path, hf_folder: Path, **overrides) -> dict:
    recipe = tiny_recipe(corpus, run_dir, **overrides)
    recipe["init_from"] = {"hf": str(hf_folder)}
    recipe["model"] = {"attn_backend": "sdpa"}
    del recipe["tokenizer"]
    return recipe


@pytest.fixture(scope="module")
def stock_folder(tiny_corpus, tmp_path_factory) -> Path:
    return save_stock_model(tmp_path_factory.mktemp("stock_hf"), tiny_corpus.tokenizer)


@pytest.fixture(scope="module")
def continued(tiny_corpus, stock_folder, tmp_path_factory) -> Path:
    from modernbert.train.trainer import run

    run_dir = tmp_path_factory.mktemp("continued")
    recipe = hf_recipe(tiny_corpus, run_dir, stock_folder, eval_loader=None, eval_interval="1ba")
    run(write_recipe(recipe, run_dir / "recipe.yaml"))
    return run_dir


def test_stock_config_of_any_vocab_converts_with_unknown_special_ids():
    import transformers

    from modernbert.hf import config_from_hf

    config = config_from_hf(transformers.ModernBertConfig(vocab_size=300))
    assert config.vocab_size == 300
    assert (config.pad_token_id, config.cls_token_id, config.mask_token_id) == (None, None, None)
    assert config_from_hf(transformers.ModernBertConfig(), mask_token_id=7).mask_token_id == 7


def built_from_hf(corpus, folder: Path, run_dir: Path):
    """(resolved recipe, our model built as a run would build it, tokenizer)."""
    from modernbert.data.tokenizer import TokenSpec, load_tokenizer
    from modernbert.train.config import load_recipe
    from modernbert.train.init_hf import resolve_hf_init, tokenizer_for
    from modernbert.train.trainer import build_model

    cfg = load_recipe(write_recipe(hf_recipe(corpus, run_dir, folder), run_dir / "r.yaml"))
    tokenizer = load_tokenizer(tokenizer_for(cfg))
    cfg = resolve_hf_init(cfg, tokenizer)
    model = build_model(cfg, TokenSpec.from_tokenizer(tokenizer)).model.eval()
    return cfg, model, tokenizer


def test_model_starts_from_the_hf_weights(tiny_corpus, stock_folder, tmp_path):
    from transformers import AutoModelForMaskedLM

    cfg, ours, tokenizer = built_from_hf(tiny_corpus, stock_folder, tmp_path)
    assert cfg.tokenizer == str(stock_folder)  # the folder's own tokenizer
    assert cfg.model.vocab_size == HF_VOCAB and cfg.model.hidden_size == 64
    # ids the stock config lacks or holds as 50k-vocab defaults come from the tokenizer
    assert cfg.model.mask_token_id == tokenizer.mask_token_id
    assert cfg.model.cls_token_id == tokenizer.cls_token_id
    theirs = AutoModelForMaskedLM.from_pretrained(stock_folder).eval()
    ids = torch.tensor([[tokenizer.cls_token_id, 100, 200, 300, tokenizer.sep_token_id]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-5)


def test_continued_loss_falls_and_export_gives_our_logits(tiny_corpus, continued, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from modernbert.train.checkpoint_export import export_checkpoint, model_from_checkpoint

    losses = read_losses(continued / "metrics.jsonl")
    first = sum(losses[s] for s in range(3)) / 3
    last = sum(losses[s] for s in range(27, 30)) / 3
    assert last < first - 0.5, (first, last)
    out = export_checkpoint(continued / "checkpoints", tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert hf.config.vocab_size == HF_VOCAB
    tok = AutoTokenizer.from_pretrained(out)
    ours, record = model_from_checkpoint(continued / "checkpoints" / "ep0-ba30-rank0.pt")
    assert record["model_config"]["mask_token_id"] == tok.mask_token_id
    enc = tok(["def add(a, b):\n    return a + b", "import os"], return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf(**enc).logits
        mine = ours(enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    keep = enc["attention_mask"].bool()
    torch.testing.assert_close(theirs[keep], mine[keep], atol=1e-4, rtol=1e-4)
    # the exported folder is itself a valid init_from.hf: the next run starts where this ended
    _, again, _ = built_from_hf(tiny_corpus, out, tmp_path / "next")
    with torch.no_grad():
        resumed = again(enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(resumed[keep], mine[keep], atol=1e-5, rtol=1e-5)


def test_continue_base_recipe_is_a_short_low_lr_run_with_decay():
    from modernbert.train.config import load_recipe

    cfg = load_recipe(Path(__file__).resolve().parents[1] / "yamls" / "continue_base.yaml")
    assert cfg.init_from.hf == "answerdotai/ModernBERT-base" and cfg.tokenizer is None
    assert cfg.optimizer.lr < 8e-4  # below pretraining's peak
    assert cfg.scheduler.t_warmup == "0.02dur" and cfg.scheduler.decay_shape == "1-sqrt"
    assert cfg.train_loader.mlm_probability == 0.3


def test_shape_keys_next_to_hf_are_refused(tiny_corpus, stock_folder, tmp_path):
    from modernbert.train import RecipeError
    from modernbert.train.config import load_recipe

    recipe = hf_recipe(tiny_corpus, tmp_path, stock_folder)
    recipe["model"]["hidden_size"] = 128
    recipe["init_from"]["mode"] = "tile"
    with pytest.raises(RecipeError, match=r"model.hidden_size: comes from init_from.hf"):
        load_recipe(write_recipe(recipe, tmp_path / "r.yaml"))
    del recipe["model"]["hidden_size"]
    with pytest.raises(RecipeError, match=r"init_from.mode: 'tile' is not available with hf"):
        load_recipe(write_recipe(recipe, tmp_path / "r.yaml"))
    recipe["init_from"] = {"mode": "weights"}
    with pytest.raises(RecipeError, match=r"init_from: set path .* or hf") as err:
        load_recipe(write_recipe(recipe, tmp_path / "r.yaml"))
    assert "tokenizer: missing (required unless init_from.hf)" in str(err.value)


def test_summary_records_fingerprint_and_max_id(tiny_corpus):
    from transformers import AutoTokenizer

    from modernbert.data.fingerprint import tokenizer_fingerprint

    summary = json.loads((tiny_corpus.mds / "summary.json").read_text())
    tok = AutoTokenizer.from_pretrained(tiny_corpus.tokenizer)
    assert summary["config"]["tokenizer_fingerprint"] == tokenizer_fingerprint(tok)
    for split in ("train", "val"):
        assert 0 < summary["splits"][split]["max_token_id"] < len(tok)


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory) -> Path:
    """A second real tokenizer, trained on different text with another vocabulary size."""
    from modernbert.data.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("other_tok")
    texts = [f"line {i}: the quick brown fox jumps over {i * 7} lazy dogs" for i in range(300)]
    train_tokenizer(texts, 320, output_dir=folder)
    return folder


def _refused(recipe: dict, tmp_path: Path, match: str) -> None:
    from modernbert.train import RecipeError
    from modernbert.train.config import load_recipe
    from modernbert.train.trainer import build_trainer

    cfg = load_recipe(write_recipe(recipe, tmp_path / "recipe.yaml"))
    with pytest.raises(RecipeError, match=match):
        build_trainer(cfg)
    assert not (tmp_path / "checkpoints").exists()  # nothing written
    assert not (tmp_path / "metrics.jsonl").exists()


def test_data_of_another_tokenizer_is_refused(tiny_corpus, other_tokenizer, tmp_path):
    folder = save_stock_model(tmp_path / "hf", other_tokenizer, vocab_size=320)
    recipe = hf_recipe(tiny_corpus, tmp_path, folder)
    _refused(recipe, tmp_path, r"stream 'local': .*summary.json was tokenized with .* sha256:")


def test_out_of_range_ids_are_refused_with_the_id(tiny_corpus, other_tokenizer, tmp_path):
    """Data from before fingerprints (none recorded) whose ids exceed the model's vocab."""
    summary = json.loads((tiny_corpus.mds / "summary.json").read_text())
    largest = max(summary["splits"][s]["max_token_id"] for s in ("train", "val"))
    assert largest >= 320
    mds = tmp_path / "old_mds"
    shutil.copytree(tiny_corpus.mds, mds)
    del summary["config"]["tokenizer_fingerprint"]
    (mds / "summary.json").write_text(json.dumps(summary))
    folder = save_stock_model(tmp_path / "hf", other_tokenizer, vocab_size=320)
    recipe = hf_recipe(tiny_corpus, tmp_path, folder, eval_loader=None)
    recipe["train_loader"]["streams"]["local"]["local"] = str(mds)
    train_max = summary["splits"]["train"]["max_token_id"]
    with pytest.warns(UserWarning, match="no tokenizer fingerprint"):
        _refused(recipe, tmp_path, rf"token id {train_max} .* outside the model's vocabulary")
    # no summary at all: the shards are scanned and the same id is found
    (mds / "summary.json").unlink()
    with pytest.warns(UserWarning, match="no tokenizer fingerprint"):
        _refused(recipe, tmp_path, rf"token id {train_max} in the data is outside")
