"""The special-token roles have one definition, which every layer reads (and the model can
import it with bare torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modernbert.data.fingerprint import _ROLES as FINGERPRINT_ROLES
from modernbert.model import ModernBertConfig
from modernbert.special_tokens import CONFIG_ID_FIELDS, MLM_ROLES, ROLES, role, trained_ids


def test_roles_name_their_fields_and_ids():
    assert [r.token for r in ROLES] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert [r.name for r in MLM_ROLES] == ["pad", "cls", "sep", "mask"]  # unk: no id needed
    assert role("mask").config_field == "mask_token_id" and role("mask").spec_field == "mask_id"
    assert trained_ids() == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    with pytest.raises(KeyError, match=r"unknown special-token role 'bos'.*'pad'"):
        role("bos")


def test_every_layer_uses_the_same_fields():
    fields = {f for f in ModernBertConfig.__dataclass_fields__ if f.endswith("_token_id")}
    assert set(CONFIG_ID_FIELDS) == fields
    assert {r.tokenizer_attr for r in ROLES} <= set(FINGERPRINT_ROLES)
    with pytest.raises(ValueError, match="mask_token_id must be a non-negative integer"):
        ModernBertConfig(mask_token_id=-1)


def test_the_model_imports_the_roles_without_data_or_tokenizers():
    code = (
        "import sys, modernbert.model, modernbert.special_tokens; "
        "bad = [m for m in ('tokenizers', 'modernbert.data', 'composer') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
