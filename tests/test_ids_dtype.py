"""uint16 token ids: half the shard bytes, the same batches and the same training losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modernbert.data import MLMLoaderConfig, StreamConfig, build_mlm_dataloader
from modernbert.data.flat import model_inputs
from modernbert.data.prep.documents import Document
from modernbert.data.prep.inputs import DocumentList
from modernbert.data.prep.local_corpus import LocalCorpus
from modernbert.data.prep.to_mds import convert, ids_dtype
from modernbert.data.tokenizer import TokenSpec, train_tokenizer
from modernbert.model import ModernBertConfig, ModernBertForMaskedLM


def test_dtype_is_the_narrowest_that_holds_the_vocabulary() -> None:
    assert ids_dtype(50368) == "uint16"  # ModernBERT's vocabulary
    assert ids_dtype(65536) == "uint16"  # ids 0..65535
    assert ids_dtype(65537) == "uint32"
    assert ids_dtype(384, "uint32") == "uint32"
    with pytest.raises(ValueError, match="do not fit uint16"):
        ids_dtype(70000, "uint16")
    with pytest.raises(ValueError, match="must be one of uint16, uint32"):
        ids_dtype(100, "int8")


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("dtype")
    docs = [
        d for d in LocalCorpus(packages=("stdlib",), max_bytes=120_000) if isinstance(d, Document)
    ]
    tok = train_tokenizer((d.text for d in docs), 512, output_dir=root / "tok")
    outs = {}
    for dtype in ("uint16", "uint32"):
        outs[dtype] = root / dtype
        convert([DocumentList(docs)], tok, outs[dtype], val_fraction=0.1, compression=None,
                input_ids_dtype=None if dtype == "uint16" else dtype)  # fmt: skip
    return outs["uint16"], outs["uint32"], tok


def shard_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in (out / "train").glob("shard.*"))


def test_uint16_shards_take_about_half_the_bytes(both) -> None:
    small, large, _ = both
    assert json.loads((small / "summary.json").read_text())["config"]["input_ids_dtype"] == "uint16"
    assert json.loads((large / "summary.json").read_text())["config"]["input_ids_dtype"] == "uint32"
    ratio = shard_bytes(small) / shard_bytes(large)
    assert 0.5 <= ratio < 0.56, ratio  # ids halve; the source/language columns stay


def loader(out: Path, tok):
    cfg = MLMLoaderConfig(streams={"s": StreamConfig(local=str(out), split="train")},
                          max_seq_len=64, packing_window=128)  # fmt: skip
    return build_mlm_dataloader(cfg, TokenSpec.from_tokenizer(tok), 8, seed=5, world_size=1, rank=0)


def test_training_on_uint16_shards_gives_the_same_losses(both) -> None:
    small, large, tok = both

    def losses(out: Path) -> list[float]:
        config = ModernBertConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2, local_attention=16, max_position_embeddings=64,
            pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id, mask_token_id=tok.mask_token_id,
        )  # fmt: skip
        torch.manual_seed(0)
        model = ModernBertForMaskedLM(config)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        out_losses = []
        for _, batch in zip(range(6), loader(out, tok), strict=False):
            assert batch["input_ids"].dtype == torch.int64
            loss = model(**model_inputs(batch)).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            out_losses.append(loss.item())
        return out_losses

    a, b = losses(small), losses(large)
    assert len(a) == 6 and a == b
    assert a[-1] < a[0]  # it does train
