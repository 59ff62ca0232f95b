"""A saved folder loads with stock transformers: AutoModelForMaskedLM and fill-mask."""

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from modernbert.hf import load_hf, save_hf_folder
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "dog",
    "ran",
    "to",
    "park",
    "def",
    "return",
    "print",
    "import",
]


def tiny_tokenizer() -> Tokenizer:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    return tok


def tiny_model(vocab_size: int = 64) -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    cfg = ModernBertConfig(
        vocab_size=vocab_size,  # padded beyond the tokenizer, as real vocabularies are
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        local_attention=4,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    return ModernBertForMaskedLM(cfg).eval()


def test_saved_folder_loads_with_automodel_and_gives_same_logits(tmp_path):
    model = tiny_model()
    folder = save_hf_folder(model, tiny_tokenizer(), tmp_path / "export")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "modernbert" and config["architectures"] == [
        "ModernBertForMaskedLM"
    ]

    loaded = transformers.AutoModelForMaskedLM.from_pretrained(folder, attn_implementation="sdpa")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["the cat sat on a [MASK]", "dog ran"], padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = loaded(**batch).logits
        ours = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    assert (ours[real] - theirs[real]).abs().max() <= 1e-4
    # ...and the folder comes back into our model unchanged.
    back = load_hf(str(folder))
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_fill_mask_pipeline_runs(tmp_path):
    folder = save_hf_folder(tiny_model(), tiny_tokenizer(), tmp_path / "export")
    fill = transformers.pipeline("fill-mask", model=str(folder), device="cpu")
    predictions = fill("the cat sat on the [MASK]", top_k=3)
    assert len(predictions) == 3
    assert all(0.0 <= p["score"] <= 1.0 and "sequence" in p for p in predictions)


def test_model_only_folder(tmp_path):
    folder = save_hf_folder(tiny_model(), None, tmp_path / "weights")
    assert not (folder / "tokenizer.json").exists()
    transformers.AutoModelForMaskedLM.from_pretrained(folder)


def test_tokenizer_must_agree_with_model(tmp_path):
    model = tiny_model()
    model.config.mask_token_id = 4  # the tokenizer's [MASK] is 3
    with pytest.raises(ValueError, match="mask_token_id"):
        save_hf_folder(model, tiny_tokenizer(), tmp_path / "bad")
    with pytest.raises(ValueError, match="more than vocab_size"):
        save_hf_folder(tiny_model(vocab_size=8), tiny_tokenizer(), tmp_path / "bad")
