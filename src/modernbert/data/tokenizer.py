"""Byte-level BPE tokenizer for text and code: training, loading, and the ids the loader needs.

Contract: `train_tokenizer` builds a fast tokenizer with the special tokens of
`modernbert.special_tokens` (ids 0-4 in its order), `[CLS] text [SEP]` templates and a vocab
padded to a multiple of 64; `load_tokenizer` accepts any fast tokenizer that fills every
masked-LM role; `TokenSpec` carries the ids the loader and masker need. Byte-level BPE never
meets an unknown character and has no normalizer, so every string, including code with tabs,
runs of spaces and blank lines, survives encode -> decode exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

from modernbert.special_tokens import MLM_ROLES, ROLES, SPECIAL_TOKENS, role, trained_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

CLS, SEP, MASK, PAD, UNK = (role(name).token for name in ("cls", "sep", "mask", "pad", "unk"))
VOCAB_MULTIPLE = 64
DEFAULT_MODEL_MAX_LENGTH = 8192
DEFAULT_MIN_FREQUENCY = 2  # a pair seen once is noise, not a merge worth a vocab slot
# Byte-level alphabet (256) + specials: below this BPE cannot learn a single merge.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS) + 1

# Pre-tokenization for text and code: words keep one leading space or symbol, digits go in
# groups of three, punctuation runs stay together, a line break swallows the trailing spaces
# before it, and an indentation run becomes its own piece (so BPE can learn "    " tokens).
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


@dataclass(frozen=True)
class TokenSpec:
    """The token ids the loader and masker need, detached from any tokenizer object."""

    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    special_ids: tuple[int, ...]
    vocab_size: int  # len(tokenizer): real token count, not the padded model vocab

    @classmethod
    def from_tokenizer(cls, tok: PreTrainedTokenizerBase) -> TokenSpec:
        check_special_tokens(tok)
        return cls(
            **{r.spec_field: getattr(tok, f"{r.tokenizer_attr}_id") for r in MLM_ROLES},
            special_ids=tuple(sorted(set(tok.all_special_ids))),
            vocab_size=len(tok),
        )

    @classmethod
    def of_trained_layout(cls, vocab_size: int) -> TokenSpec:
        """The ids a tokenizer `train_tokenizer` builds has: for synthetic data (benchmarks,
        tests) that has no tokenizer."""
        ids = trained_ids()
        return cls(
            **{r.spec_field: ids[r.name] for r in MLM_ROLES},
            special_ids=tuple(sorted(ids.values())),
            vocab_size=vocab_size,
        )

    def role_ids(self) -> tuple[int, ...]:
        """The ids of the masked-LM roles (pad, cls, sep, mask)."""
        return tuple(getattr(self, r.spec_field) for r in MLM_ROLES)


def check_special_tokens(tok: PreTrainedTokenizerBase, name: str = "tokenizer") -> None:
    """Raise ValueError naming every masked-LM role (`MLM_ROLES`) the tokenizer lacks."""
    missing = [
        f"{r.tokenizer_attr} ({r.token})"
        for r in MLM_ROLES
        if getattr(tok, f"{r.tokenizer_attr}_id", None) is None
    ]
    if missing:
        raise ValueError(
            f"{name} lacks special tokens needed for masked-LM pretraining: {', '.join(missing)}"
        )


def _build_backend() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _special_added_tokens() -> list[AddedToken]:
    # lstrip on [MASK] lets "The capital is [MASK]." put the space into the mask, as fill-mask
    # pipelines expect; the others must match exactly.
    return [
        AddedToken(t, lstrip=(t == MASK), rstrip=False, normalized=False, special=True)
        for t in SPECIAL_TOKENS
    ]


def _pad_vocab(tok: Tokenizer, multiple: int) -> list[str]:
    """Add [unusedN] tokens until the vocab is a multiple of `multiple` (tensor-core friendly)."""
    size = tok.get_vocab_size(with_added_tokens=True)
    unused = [f"[unused{i}]" for i in range((-size) % multiple)]
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True, lstrip=False, rstrip=False) for t in unused]
    )
    return unused


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    output_dir: str | Path | None = None,
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; save it (transformers layout) when `output_dir` is set.

    `vocab_size` counts specials and the 256 byte symbols; the result is then padded with
    [unusedN] tokens to a multiple of 64, so len(tokenizer) may exceed it by up to 63 (or fall
    short of it before padding when the corpus is too small to learn that many merges).
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE}, got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    tok = _build_backend()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=_special_added_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() <= MIN_VOCAB_SIZE - 1:
        raise ValueError("no training text: the tokenizer learned no merges (empty input?)")
    ids = {t: tok.token_to_id(t) for t in (CLS, SEP)}
    tok.post_processor = TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=list(ids.items()),
    )
    unused = _pad_vocab(tok, VOCAB_MULTIPLE)
    fast = _wrap(tok, model_max_length, unused)
    if output_dir is not None:
        fast.save_pretrained(str(output_dir))
    return fast


def _wrap(tok: Tokenizer, model_max_length: int, unused: list[str]) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    added = {t.content: t for t in _special_added_tokens()}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{r.tokenizer_attr: added[r.token] for r in ROLES},
        additional_special_tokens=unused,
        model_max_length=model_max_length,
        # The default would rewrite " ." as "." on decode and break exact round trips.
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a separator is meant as a path.
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name.count("/") > 1
        or Path(name).suffix in {".json", ".model"}
    )


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer from a local folder (preferred) or a hub name, checked for MLM.

    Raises FileNotFoundError for a missing/empty folder and ValueError when a required
    special token is missing or the tokenizer is not a fast (Rust) one.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            raise FileNotFoundError(
                f"tokenizer folder {path} has no tokenizer.json or tokenizer_config.json"
            )
        tok = AutoTokenizer.from_pretrained(str(path), use_fast=True)
    elif path.exists():
        raise ValueError(f"tokenizer path {path} is a file; pass the folder that contains it")
    elif isinstance(name_or_path, Path) or _looks_like_path(name):
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    else:
        try:
            tok = AutoTokenizer.from_pretrained(name, use_fast=True)
        except OSError as err:
            raise FileNotFoundError(
                f"tokenizer {name!r} is neither a local folder nor a reachable hub name: {err}"
            ) from err
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise ValueError(f"tokenizer {name!r} has no fast (Rust) implementation")
    check_special_tokens(tok, name=f"tokenizer {name!r}")
    return tok
