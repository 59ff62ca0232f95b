"""The special-token roles, defined once: which roles exist, their token text, and the names
each layer gives their ids.

Contract: `ROLES` lists every special token a tokenizer of ours has, in the order
`train_tokenizer` adds them, so a tokenizer we train gives `[PAD]` id 0, `[UNK]` 1, `[CLS]` 2,
`[SEP]` 3 and `[MASK]` 4 (`trained_ids`). `MLM_ROLES` are the roles masked-LM pretraining
needs an id for: a tokenizer without one is refused, the model config carries their ids
(`<role>_token_id`) and the loader's `TokenSpec` too (`<role>_id`); they, like every id a
tokenizer marks special, are never selected for masking. Pure Python (no torch, numpy or
tokenizers), so `modernbert.model` can use it on a box with bare torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """One special token: its role name (`cls`) and its text (`[CLS]`)."""

    name: str
    token: str
    mlm: bool = True  # masked-LM pretraining needs its id (unk: no)

    @property
    def tokenizer_attr(self) -> str:
        """transformers' tokenizer attribute holding the token (`cls_token`)."""
        return f"{self.name}_token"

    @property
    def config_field(self) -> str:
        """The id's field in `ModernBertConfig` and transformers' config (`cls_token_id`)."""
        return f"{self.name}_token_id"

    @property
    def spec_field(self) -> str:
        """The id's field in the loader's `modernbert.data.tokenizer.TokenSpec` (`cls_id`)."""
        return f"{self.name}_id"


ROLES: tuple[Role, ...] = (
    Role("pad", "[PAD]"),
    Role("unk", "[UNK]", mlm=False),
    Role("cls", "[CLS]"),
    Role("sep", "[SEP]"),
    Role("mask", "[MASK]"),
)
MLM_ROLES: tuple[Role, ...] = tuple(r for r in ROLES if r.mlm)
SPECIAL_TOKENS: tuple[str, ...] = tuple(r.token for r in ROLES)
CONFIG_ID_FIELDS: tuple[str, ...] = tuple(r.config_field for r in MLM_ROLES)


def role(name: str) -> Role:
    """The role called `name` (`"cls"`); a KeyError names the valid ones."""
    for r in ROLES:
        if r.name == name:
            return r
    raise KeyError(f"unknown special-token role {name!r}; valid: {[r.name for r in ROLES]}")


def trained_ids() -> dict[str, int]:
    """Role name -> id in a tokenizer `train_tokenizer` builds (and in synthetic test data)."""
    return {r.name: i for i, r in enumerate(ROLES)}
