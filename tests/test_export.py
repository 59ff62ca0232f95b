"""scripts/export_hf.py: a Composer checkpoint (monolithic file or FSDP sharded folder) becomes
a folder that stock transformers loads, with the same logits as our model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.checkpoint_export import RUN_RECORD_FILE, RUN_RECORD_KEY, RunRecord
from modernbert.train.composer_model import ComposerMLM

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_hf.py"


def _script_main():
    spec = importlib.util.spec_from_file_location("export_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def trained_like(tiny_corpus):
    """A model with non-trivial weights and its run record, as a training run would save."""
    config = ModernBertConfig(
        vocab_size=tiny_corpus.vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        local_attention=16,
        global_rope_theta=160000.0,
        **tiny_corpus.special_ids,
    )
    torch.manual_seed(3)
    model = ModernBertForMaskedLM(config)
    record = RunRecord(config, str(tiny_corpus.tokenizer), None).state_dict()
    return model, record


def _same_logits(folder, model):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    hf = AutoModelForMaskedLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    assert hf.config.global_rope_theta == 160000.0
    enc = tok(["for i in range(10):\n    print(i)"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            hf(**enc).logits, model.eval()(enc["input_ids"]).logits, atol=1e-4, rtol=1e-4
        )


def test_export_monolithic_checkpoint_with_the_script(trained_like, tmp_path, capsys):
    model, record = trained_like
    ckpt = tmp_path / "ep0-ba3-rank0.pt"
    state = {"model": ComposerMLM(model).state_dict(), "callbacks": {RUN_RECORD_KEY: record}}
    torch.save({"state": state, "rng": []}, ckpt)
    _script_main()(["--checkpoint", str(ckpt), "--output", str(tmp_path / "hf")])
    assert "exported" in capsys.readouterr().out
    _same_logits(tmp_path / "hf", model)


def test_export_sharded_checkpoint_reads_run_json(trained_like, tmp_path):
    import torch.distributed.checkpoint as dcp

    from modernbert.train.checkpoint_export import export_checkpoint

    model, record = trained_like
    folder = tmp_path / "checkpoints"
    state = {"state": {"model": ComposerMLM(model).state_dict()}}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(folder / "ep0-ba3")), no_dist=True)
    with pytest.raises(FileNotFoundError, match=RUN_RECORD_FILE):
        export_checkpoint(folder, tmp_path / "hf")
    (folder / RUN_RECORD_FILE).write_text(json.dumps(record))
    _same_logits(export_checkpoint(folder, tmp_path / "hf"), model)
