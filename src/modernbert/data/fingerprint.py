"""A tokenizer's fingerprint: one short hash that changes whenever token ids would change.

Shards store token ids only; read with another tokenizer they are silent garbage (a model
learns nothing, or indexes past its embedding table). Data prep records the fingerprint in
summary.json and a training run compares it with its own tokenizer's before building
anything. The hash covers what decides ids: every token with its id (added and special
tokens included) and which id fills each special role. Saving and reloading a tokenizer
keeps it; a different vocabulary, id order or special token changes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from modernbert.special_tokens import role

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FINGERPRINT_KEY = "tokenizer_fingerprint"  # its key in summary.json's "config"
# Every role of modernbert.special_tokens, plus transformers' bos/eos. The order is part of
# the fingerprints already recorded in summary.json files, so it is fixed here.
_ROLES = (
    *(role(name).tokenizer_attr for name in ("cls", "sep", "mask", "pad", "unk")),
    "bos_token",
    "eos_token",
)


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """`sha256:<16 hex>` of the tokenizer's vocabulary and special-token ids."""
    vocab = sorted(tok.get_vocab().items(), key=lambda item: (item[1], item[0]))
    specials = {role: getattr(tok, f"{role}_id", None) for role in _ROLES}
    payload = json.dumps({"vocab": vocab, "specials": specials}, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
