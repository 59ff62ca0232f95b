"""init_from: centre tiling of a base model into a larger one, weights copy, and the safe,
layout-aware checkpoint reader behind both."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import pytest
import torch

from modernbert.model import ModernBertConfig, ModernBertForMaskedLM
from modernbert.train.checkpoint import (
    centre_tile,
    find_checkpoint,
    init_model_from,
    layer_source,
    load_model_state_dict,
    safe_torch_load,
    tile_state_dict,
)
from modernbert.train.composer_model import ComposerMLM

BASE = ModernBertConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    local_attention=16,
    pad_token_id=0,
    cls_token_id=2,
    sep_token_id=3,
    mask_token_id=4,
)
# One extra head on each side (head dim 16): offset (96 - 64) / 2 = 16 = one head.
LARGE = dataclasses.replace(
    BASE, hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6
)


def _save_composer_checkpoint(model: ModernBertForMaskedLM, path: Path) -> Path:
    """The layout Composer writes: state.model holds the ComposerModel's state dict."""
    torch.save({"state": {"model": ComposerMLM(model).state_dict()}, "rng": []}, path)
    return path


def _centre(large: torch.Tensor, small_shape: torch.Size) -> torch.Tensor:
    index = tuple(slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(large.shape, small_shape))
    return large[index]


def test_centre_tile_puts_source_in_the_middle_and_wraps():
    src = torch.arange(4.0)
    assert centre_tile(src, (8,)).tolist() == [2, 3, 0, 1, 2, 3, 0, 1]
    grid = torch.arange(6.0).reshape(2, 3)
    out = centre_tile(grid, (4, 5))
    assert torch.equal(_centre(out, grid.shape), grid)
    assert torch.equal(out[0], out[2])  # rows wrap with period 2
    with pytest.raises(ValueError, match="only grows"):
        centre_tile(grid, (1, 3))


def test_layer_source_repeats_the_top_base_layers():
    assert [layer_source(i, 22, 28) for i in range(28)] == [*range(22), *range(16, 22)]
    assert [layer_source(i, 2, 3) for i in range(3)] == [0, 1, 1]


def test_large_model_reproduces_base_weights_in_centre_slices(tmp_path):
    torch.manual_seed(0)
    base = ModernBertForMaskedLM(BASE)
    ckpt = _save_composer_checkpoint(base, tmp_path / "base.pt")
    large = ModernBertForMaskedLM(LARGE)
    fresh = {k: v.clone() for k, v in large.state_dict().items()}
    init_model_from(large, ckpt, "tile")

    base_sd, grown = base.state_dict(), large.state_dict()
    checked = 0
    for name, tensor in grown.items():
        layer = name.split("layers.")[1].split(".")[0] if "layers." in name else None
        src_name = name
        if layer is not None:
            src = layer_source(int(layer), BASE.num_hidden_layers, LARGE.num_hidden_layers)
            src_name = name.replace(f"layers.{layer}.", f"layers.{src}.")
        if src_name not in base_sd:  # e.g. layer 0 of base has no attention norm
            torch.testing.assert_close(tensor, fresh[name])
            continue
        source = base_sd[src_name]
        blocks = 3 if "Wqkv" in name else 2 if "mlp.Wi" in name else 1
        for big, small in zip(tensor.chunk(blocks), source.chunk(blocks)):
            assert torch.equal(_centre(big, small.shape), small), name
        checked += 1
    assert checked >= len(base_sd) - 1
    # The extra (third) layer is a copy of the top base layer, tiled.
    top = base_sd["model.layers.1.mlp.Wo.weight"]
    assert torch.equal(_centre(grown["model.layers.2.mlp.Wo.weight"], top.shape), top)
    # Decoder stays tied to the embeddings, and the grown model runs.
    assert (
        large.decoder.weight.data_ptr() == large.model.embeddings.tok_embeddings.weight.data_ptr()
    )
    ids = torch.randint(5, 128, (2, 16))
    assert torch.isfinite(large(ids).logits).all()


def test_tile_state_dict_reports_tensors_without_counterpart():
    base = ModernBertForMaskedLM(BASE).state_dict()
    target = ModernBertForMaskedLM(LARGE).state_dict()
    grown, kept = tile_state_dict(base, target)
    assert set(grown) == set(target)
    assert all(grown[k].shape == target[k].shape for k in target)
    assert all(k not in base and "layers." in k for k in kept)
    with pytest.raises(ValueError, match="only grows"):
        tile_state_dict(target, base)


def test_weights_mode_copies_exactly_and_refuses_other_shapes(tmp_path, capsys):
    torch.manual_seed(1)
    source = ModernBertForMaskedLM(BASE)
    ckpt = _save_composer_checkpoint(source, tmp_path / "ep0-ba5-rank0.pt")
    target = ModernBertForMaskedLM(dataclasses.replace(BASE, global_rope_theta=160000.0))
    init_model_from(target, tmp_path, "weights")  # a folder: its latest checkpoint
    assert "reading model weights from" in capsys.readouterr().out
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="mode: tile"):
        init_model_from(ModernBertForMaskedLM(LARGE), ckpt, "weights")
    with pytest.raises(ValueError, match="unknown mode"):
        init_model_from(target, ckpt, "copy")


def test_find_checkpoint_picks_the_latest(tmp_path):
    model = ModernBertForMaskedLM(BASE)
    for batch in (5, 20, 10):
        _save_composer_checkpoint(model, tmp_path / f"ep0-ba{batch}-rank0.pt")
    assert find_checkpoint(tmp_path).name == "ep0-ba20-rank0.pt"
    (tmp_path / "latest-rank0.pt").symlink_to("ep0-ba10-rank0.pt")
    assert find_checkpoint(tmp_path).name == "ep0-ba10-rank0.pt"
    with pytest.raises(FileNotFoundError, match=r"init_from\.path"):
        find_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="without a Composer checkpoint"):
        find_checkpoint(tmp_path / "empty")


def test_sharded_checkpoint_folder_is_read(tmp_path):
    import torch.distributed.checkpoint as dcp

    model = ComposerMLM(ModernBertForMaskedLM(BASE))
    folder = tmp_path / "checkpoints" / "ep0-ba7"
    state = {"state": {"model": model.state_dict(), "run_name": "x"}}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(folder)), no_dist=True)
    loaded, path = load_model_state_dict(tmp_path / "checkpoints")
    assert path == folder
    expected = model.model.state_dict()
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


class _NotATensor:
    pass


def test_loader_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state": {"model": {}}, "payload": _NotATensor()}, path)
    with pytest.raises(ValueError, match="safe allowlist"):
        safe_torch_load(path)
    good = tmp_path / "good.pt"
    torch.save({"state": {"model": collections.OrderedDict(w=torch.ones(2))}}, good)
    assert torch.equal(safe_torch_load(good)["state"]["model"]["w"], torch.ones(2))
