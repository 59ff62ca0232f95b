"""Reading model weights out of Composer checkpoints, and growing them into larger models.

Two ways a new phase starts from an old one (the recipe's ``init_from``):

* ``weights``: copy the model weights of a checkpoint into a model of the same shape. Time,
  optimizer, scheduler and data position start fresh (context extension, decay phases).
  (``reset_optimizer: false`` keeps the optimizer state; the trainer hands that case to
  Composer's loader.)
* ``tile``: grow a smaller model's weights into a larger one (large from base). Rule: every
  tensor of the large model holds the base tensor exactly in its centre (offset
  ``(L - S) // 2`` along each dimension) and the rest is filled by wrapping around, as if the
  base tensor were tiled periodically; fused ``Wqkv`` / ``Wi`` are tiled block by block
  (q, k, v / input, gate). Layer ``i`` of the large model starts from base layer ``i``; the
  extra layers repeat the top base layers (:func:`layer_source`). Tensors with no base
  counterpart keep their fresh initialisation.

Checkpoints are read with ``torch.load(weights_only=True)`` and a short allowlist of plain
types that Composer writes (timedelta, numpy arrays of the RNG state, the torch version), so
reading a checkpoint never runs pickled code. Both layouts Composer saves are read: a
monolithic ``.pt`` file and an FSDP sharded folder (``.metadata`` + ``__N_0.distcp``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn

from modernbert.errors import UserError

# The attribute under which the ComposerModel holds the bare model (composer_model.py);
# Composer checkpoints store the ComposerModel's state dict, so every key starts with it.
COMPOSER_MODEL_PREFIX = "model."

# Fused projections whose output dimension stacks independent blocks (q/k/v, input/gate):
# tiling treats each block on its own so a query row never lands among the keys.
FUSED_BLOCKS: dict[str, int] = {"Wqkv.weight": 3, "Wqkv.bias": 3, "Wi.weight": 2, "Wi.bias": 2}

_LAYER_KEY = re.compile(r"(^|\.)layers\.(\d+)\.")
_CKPT_NAME = re.compile(r"ep(\d+)-ba(\d+)(-rank0\.pt)?$")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used: unsafe, unreadable, or for another model."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle names objects outside the allowlist (possibly code)."""


class CorruptCheckpointError(CheckpointError):
    """The checkpoint file is truncated or damaged."""


def _safe_globals() -> list[Any]:
    """Plain, code-free types found in Composer checkpoints besides tensors."""
    np_core = getattr(np, "_core", None) or np.core
    found = [
        datetime.timedelta,
        torch.torch_version.TorchVersion,
        np_core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
    ]
    found += [type(np.dtype(name)) for name in ("uint32", "int64", "float64", "float32", "bool")]
    return found


def safe_torch_load(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: a checkpoint cannot execute code when read.

    Raises UnsafeCheckpointError for content outside the allowlist, CorruptCheckpointError
    for a truncated or damaged file (both name the file).
    """
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises a bare UnpicklingError subclass
        if "weights_only" not in str(err) and "Unsupported global" not in str(err):
            raise CorruptCheckpointError(
                f"checkpoint {path} is truncated or corrupt: {str(err).splitlines()[0][:200]}"
            ) from None
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds objects outside the safe allowlist, refusing to unpickle "
            f"them: {str(err).splitlines()[-1][:300]}"
        ) from None


def _is_sharded(folder: Path) -> bool:
    return (folder / ".metadata").is_file()


def _batch_of(path: Path) -> int:
    match = _CKPT_NAME.search(path.name)
    return int(match.group(2)) if match else -1


def find_checkpoint(path: str | Path) -> Path:
    """Resolve ``path`` to one checkpoint: a ``.pt`` file or a sharded folder.

    A save folder resolves to its ``latest-rank0.pt`` link when Composer wrote one, else to
    the checkpoint with the highest batch number in it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"init_from.path: no checkpoint at {path}")
    if path.is_file() or _is_sharded(path):
        return path
    latest = path / "latest-rank0.pt"
    if latest.exists():
        return latest.resolve()
    candidates = [p for p in path.glob("ep*-ba*-rank0.pt") if p.is_file()]
    candidates += [p for p in path.glob("ep*-ba*") if p.is_dir() and _is_sharded(p)]
    if not candidates:
        raise FileNotFoundError(
            f"init_from.path: {path} is a folder without a Composer checkpoint "
            "(expected latest-rank0.pt, ep*-ba*-rank0.pt or a sharded ep*-ba*/ folder)"
        )
    return max(candidates, key=_batch_of)


def _load_sharded_model(folder: Path) -> dict[str, torch.Tensor]:
    """Gather the full model tensors of an FSDP sharded checkpoint into one process."""
    reader = dcp.FileSystemReader(str(folder))
    metadata = reader.read_metadata()
    target: dict[str, torch.Tensor] = {}
    for fqn, meta in metadata.state_dict_metadata.items():
        route = metadata.planner_data.get(fqn, ())
        if (
            len(route) == 3
            and route[0] == "state"
            and route[1] == "model"
            and hasattr(meta, "size")
        ):
            target[route[2]] = torch.empty(meta.size, dtype=meta.properties.dtype)
    if not target:
        raise ValueError(f"sharded checkpoint {folder} holds no state.model tensors")
    dcp.load({"state": {"model": target}}, storage_reader=reader, no_dist=True)
    return target


@dataclass
class CheckpointContents:
    """What weights-only consumers need from a checkpoint: the bare model's tensors (the
    ComposerModel prefix removed), the callbacks' saved state when readable, and the file."""

    model: dict[str, torch.Tensor]
    callbacks: dict[str, Any]
    path: Path


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """Read the model weights (and callback states of a monolithic file) of a checkpoint.

    Callback states of a sharded checkpoint are pickled objects inside the DCP files; they
    are not read (that would need ``weights_only=False``).
    """
    resolved = find_checkpoint(path)
    if resolved.is_dir():
        return CheckpointContents(
            strip_prefix(_load_sharded_model(resolved), COMPOSER_MODEL_PREFIX), {}, resolved
        )
    checkpoint = safe_torch_load(resolved)
    try:
        state = checkpoint["state"]
        raw = state["model"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{resolved} is not a Composer checkpoint (no state.model)") from err
    callbacks = state.get("callbacks") or {}
    return CheckpointContents(strip_prefix(raw, COMPOSER_MODEL_PREFIX), callbacks, resolved)


def load_model_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The bare model's weights (ComposerModel prefix removed) and the file they came from."""
    contents = read_checkpoint(path)
    return contents.model, contents.path


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key that has it (Composer wrapper, DDP ``module.``)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_weights_into(model: nn.Module, path: str | Path) -> tuple[Path, list[str]]:
    """``weights`` mode: copy a checkpoint's model weights into ``model`` (same shapes)."""
    state, resolved = load_model_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {keys[:5]}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise ValueError(
            f"init_from (weights): checkpoint {resolved} does not fit the model ({detail}); "
            "use mode: tile to grow a smaller model"
        )
    model.load_state_dict(state, strict=True)
    return resolved, []


# ----------------------------------------------------------------------------- tiling


def centre_tile(source: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Grow ``source`` to ``shape``: the source sits in the centre, the rest wraps around.

    Along each dimension of target size ``L`` and source size ``S`` the offset is
    ``o = (L - S) // 2`` and target index ``i`` reads source index ``(i - o) mod S``. So
    ``target[o:o+S] == source`` exactly and the borders repeat the opposite edges of the
    source, as if the source were tiled periodically and a window cut out of the middle.
    """
    if source.dim() != len(shape):
        raise ValueError(f"cannot tile a {tuple(source.shape)} tensor into {tuple(shape)}")
    out = source
    for dim, (size, src) in enumerate(zip(shape, source.shape)):
        if size < src:
            raise ValueError(f"tiling only grows: dim {dim} shrinks from {src} to {size}")
        if size == src:
            continue
        offset = (size - src) // 2
        index = (torch.arange(size) - offset) % src
        out = out.index_select(dim, index)
    return out.clone()


def _tile_param(name: str, source: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
    blocks = next((n for suffix, n in FUSED_BLOCKS.items() if name.endswith(suffix)), 1)
    if blocks == 1:
        return centre_tile(source, target_shape)
    if source.shape[0] % blocks or target_shape[0] % blocks:
        raise ValueError(f"{name}: dim 0 is not {blocks} fused blocks")
    block_shape = (target_shape[0] // blocks, *target_shape[1:])
    return torch.cat([centre_tile(chunk, block_shape) for chunk in source.chunk(blocks, 0)], 0)


def layer_source(layer: int, num_base_layers: int, num_target_layers: int) -> int:
    """Which base layer initialises target ``layer``.

    The first ``num_base_layers`` layers are the base layers in order; the ``extra`` layers
    after them repeat the last ``extra`` base layers in order (wrapping for more than double
    depth), so the stack ends with the base model's own top layers. With a global layer
    every 3 layers and ``extra`` a multiple of 3 (22 -> 28), every copy keeps its type.
    """
    if layer < num_base_layers:
        return layer
    extra = num_target_layers - num_base_layers
    return (num_base_layers - extra + (layer - num_base_layers)) % num_base_layers


def _num_layers(keys: list[str]) -> int:
    found = [int(m.group(2)) for k in keys if (m := _LAYER_KEY.search(k))]
    return max(found) + 1 if found else 0


def tile_state_dict(
    base: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Grow the base model's state dict into the target's shapes (``tile`` mode).

    Each target tensor takes the base tensor of the same name (its layer mapped by
    :func:`layer_source`), centre-tiled per :func:`centre_tile`, fused projections block by
    block. Target tensors without a base counterpart (e.g. the attention norm of a layer
    copied from base layer 0, which has none) keep their fresh initialisation; their
    names are returned so the caller can report them.
    """
    n_base, n_target = _num_layers(list(base)), _num_layers(list(target))
    if n_target < n_base:
        raise ValueError(f"tiling only grows: {n_base} base layers > {n_target} target layers")
    grown: dict[str, torch.Tensor] = {}
    kept: list[str] = []
    for name, fresh in target.items():
        match = _LAYER_KEY.search(name)
        source_name = name
        if match:
            src = layer_source(int(match.group(2)), n_base, n_target)
            start, end = match.span()
            source_name = f"{name[:start]}{match.group(1)}layers.{src}.{name[end:]}"
        if source_name not in base:
            grown[name] = fresh
            kept.append(name)
            continue
        grown[name] = _tile_param(name, base[source_name], fresh.shape).to(fresh.dtype)
    return grown, kept


def tile_weights_into(model: nn.Module, path: str | Path) -> tuple[Path, list[str]]:
    """``tile`` mode: centre-tile a smaller checkpoint into ``model``; see :func:`tile_state_dict`."""
    base, resolved = load_model_state_dict(path)
    grown, kept = tile_state_dict(base, model.state_dict())
    model.load_state_dict(grown, strict=True)
    return resolved, kept


INIT_MODES = {"weights": load_weights_into, "tile": tile_weights_into}


def init_model_from(model: nn.Module, path: str | Path, mode: str) -> Path:
    """Apply the recipe's ``init_from`` to a freshly built model; says where it reads from."""
    if mode not in INIT_MODES:
        raise ValueError(f"init_from.mode: unknown mode {mode!r}; valid: {sorted(INIT_MODES)}")
    print(f"init_from ({mode}): reading model weights from {find_checkpoint(path)}", flush=True)
    resolved, kept = INIT_MODES[mode](model, path)
    if kept:
        print(f"init_from ({mode}): {len(kept)} tensors without a base counterpart keep their init")
    return resolved
