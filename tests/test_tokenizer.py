"""Tokenizer training and loading: exact round trips on code and prose, specials, padding."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from modernbert.data.tokenizer import (
    CLS,
    MASK,
    PAD,
    SEP,
    UNK,
    TokenSpec,
    load_tokenizer,
    train_tokenizer,
)
from modernbert.special_tokens import MLM_ROLES, ROLES, trained_ids

REPO = Path(__file__).resolve().parents[1]

CODE = '''import os


class Greeter:
\t"""Say hello."""

    def __init__(self, name: str) -> None:
        self.name = name   # trailing spaces here:\x20\x20\x20
        \t
    def greet(self):\r\n        return f"héllo, {self.name}! 你好 🙂"


if __name__ == "__main__":
    print(Greeter("wörld").greet())
'''
PROSE = (
    "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault , really .\n\n"
    "Byte-level BPE keeps every character: naïve café, Ωmega, 東京, and emoji 🚀🚀.\n"
)


def training_texts() -> list[str]:
    """A few kB of text and code: enough for a 512-token vocabulary."""
    texts = []
    for i in range(40):
        texts.append(CODE.replace("Greeter", f"Greeter{i}"))
        texts.append(PROSE + f"Paragraph number {i} talks about tokenizers and models.\n")
    return texts


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(training_texts(), vocab_size=512, output_dir=out)
    return out


@pytest.fixture(scope="module")
def tok(tok_dir: Path) -> PreTrainedTokenizerFast:
    return load_tokenizer(tok_dir)


WEIRD = [
    CODE,
    PROSE,
    "\t\t\tdeep tabs\n\n\n\n    four spaces\n        eight\n",
    "  leading and trailing  ",
    "unseen chars: ∮ E⋅da = Q, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and a zero-width\u200bjoiner",
    "x  =  1 ;  y=2 .  z ,",
    "",
]


@pytest.mark.parametrize("text", WEIRD)
def test_round_trip_is_exact(tok: PreTrainedTokenizerFast, text: str) -> None:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    with_specials = tok(text)["input_ids"]
    assert tok.decode(with_specials, skip_special_tokens=True) == text


def test_code_whitespace_is_tokenized_not_normalized(tok: PreTrainedTokenizerFast) -> None:
    # Indentation must reach the model: 4 and 8 spaces give different token sequences.
    four = tok("\n    x", add_special_tokens=False)["input_ids"]
    eight = tok("\n        x", add_special_tokens=False)["input_ids"]
    tab = tok("\n\tx", add_special_tokens=False)["input_ids"]
    assert len({tuple(four), tuple(eight), tuple(tab)}) == 3
    assert tok.unk_token_id not in tok(CODE + PROSE + WEIRD[4])["input_ids"]


def test_vocab_is_padded_to_64_and_specials_exist(tok: PreTrainedTokenizerFast) -> None:
    assert len(tok) % 64 == 0
    vocab = tok.get_vocab()
    for token in (CLS, SEP, MASK, PAD, UNK):
        assert token in vocab
    assert (tok.cls_token, tok.sep_token, tok.mask_token, tok.pad_token) == (CLS, SEP, MASK, PAD)


def test_padding_adds_unused_tokens() -> None:
    # 300 is no multiple of 64: 20 [unusedN] tokens bring it to 320.
    small = train_tokenizer(training_texts()[:4], vocab_size=300)
    assert len(small) == 320
    assert "[unused0]" in small.get_vocab() and "[unused19]" in small.get_vocab()
    assert "[unused20]" not in small.get_vocab()


def test_post_processor_wraps_single_and_pair(tok: PreTrainedTokenizerFast) -> None:
    single = tok("hello world")["input_ids"]
    assert single[0] == tok.cls_token_id and single[-1] == tok.sep_token_id
    assert tok.sep_token_id not in single[1:-1]
    pair = tok("hello", "world")["input_ids"]
    assert pair[0] == tok.cls_token_id
    assert [i for i, t in enumerate(pair) if t == tok.sep_token_id] != [len(pair) - 1]
    assert pair.count(tok.sep_token_id) == 2 and pair[-1] == tok.sep_token_id
    assert "token_type_ids" not in tok("hello")


def test_mask_token_absorbs_the_space_before_it(tok: PreTrainedTokenizerFast) -> None:
    ids = tok("The capital is [MASK].", add_special_tokens=False)["input_ids"]
    assert ids.count(tok.mask_token_id) == 1
    before = tok("The capital is", add_special_tokens=False)["input_ids"]
    assert ids[: len(before)] == before and ids[len(before)] == tok.mask_token_id


def test_auto_tokenizer_loads_the_folder(tok_dir: Path, tok: PreTrainedTokenizerFast) -> None:
    auto = AutoTokenizer.from_pretrained(str(tok_dir))
    assert isinstance(auto, PreTrainedTokenizerFast)
    assert len(auto) == len(tok)
    assert auto(CODE)["input_ids"] == tok(CODE)["input_ids"]
    assert auto.decode(auto(CODE)["input_ids"], skip_special_tokens=True) == CODE
    assert (tok_dir / "tokenizer_config.json").is_file()
    assert (tok_dir / "special_tokens_map.json").is_file()


def test_token_spec(tok: PreTrainedTokenizerFast) -> None:
    spec = TokenSpec.from_tokenizer(tok)
    vocab = tok.get_vocab()
    assert (spec.cls_id, spec.sep_id, spec.mask_id, spec.pad_id) == (
        vocab[CLS],
        vocab[SEP],
        vocab[MASK],
        vocab[PAD],
    )
    assert spec.vocab_size == len(tok)
    assert {vocab[t] for t in (CLS, SEP, MASK, PAD, UNK)} <= set(spec.special_ids)
    assert vocab["Ġthe"] not in spec.special_ids if "Ġthe" in vocab else True
    assert list(spec.special_ids) == sorted(spec.special_ids)


def test_trained_ids_follow_the_one_role_table(tok: PreTrainedTokenizerFast) -> None:
    ids = trained_ids()
    for role in ROLES:
        assert (
            getattr(tok, f"{role.tokenizer_attr}_id")
            == ids[role.name]
            == tok.get_vocab()[role.token]
        )
    spec, synthetic = TokenSpec.from_tokenizer(tok), TokenSpec.of_trained_layout(len(tok))
    assert spec.role_ids() == synthetic.role_ids() == tuple(ids[r.name] for r in MLM_ROLES)
    assert set(synthetic.special_ids) == set(ids.values()) <= set(spec.special_ids)


def test_load_rejects_missing_and_incomplete(tmp_path: Path, tok: PreTrainedTokenizerFast) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer("./no/such/tokenizer")
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        load_tokenizer(tmp_path)
    no_mask = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer, cls_token=CLS, sep_token=SEP, pad_token=PAD
    )
    no_mask.save_pretrained(str(tmp_path / "no_mask"))
    with pytest.raises(ValueError, match=r"mask_token \(\[MASK\]\)"):
        load_tokenizer(tmp_path / "no_mask")
    with pytest.raises(ValueError, match="mask_token"):
        TokenSpec.from_tokenizer(no_mask)


def test_train_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="min_frequency"):
        train_tokenizer(["abc"], vocab_size=512, min_frequency=0)
    with pytest.raises(ValueError, match="no training text"):
        train_tokenizer([], vocab_size=512)


def test_cli_trains_on_a_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(training_texts()[:20]):
        (corpus / f"doc{i}.{'py' if i % 2 == 0 else 'md'}").write_text(text, encoding="utf-8")
    (corpus / "skip.bin").write_bytes(b"\x00\x01")
    cli = runpy.run_path(str(REPO / "data_prep" / "train_tokenizer.py"))
    out = tmp_path / "tok"
    cli["main"](["--input", str(corpus), "--vocab-size", "400", "--output", str(out)])
    loaded = load_tokenizer(out)
    assert len(loaded) % 64 == 0
    assert loaded.decode(loaded(CODE)["input_ids"], skip_special_tokens=True) == CODE


def test_cli_trains_on_the_local_corpus(tmp_path: Path) -> None:
    cli = runpy.run_path(str(REPO / "data_prep" / "train_tokenizer.py"))
    out = tmp_path / "tok"
    argv = ["--source", "local", "--local-packages", "json", "--max-docs", "20"]
    cli["main"]([*argv, "--vocab-size", "512", "--output", str(out)])
    loaded = load_tokenizer(out)
    assert len(loaded) == 512
    assert {"ĠĠĠĠ", "JSON"} <= set(loaded.get_vocab())  # indentation and json source
