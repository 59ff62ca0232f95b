"""Recipes composed from parts, and model sizes looked up by name.

A recipe may start with `inherit: [part.yaml, ...]` (paths relative to the recipe's folder):
the parts are merged in order (OmegaConf merge: later keys win, mappings merge key by key),
then the recipe itself on top; parts may inherit in turn. So the cluster recipes share one
common part, one part per phase and one per size, and each keeps only what is its own.

`model: {size: NAME}` takes the architecture of NAME from the one table of sizes,
`model_sizes.yaml` next to this module; keys written beside `size` win over the table.
Interpolations such as `${run_name}` are resolved after composition and overrides.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from modernbert.suggest import did_you_mean
from modernbert.train.typed_yaml import RecipeError

INHERIT_KEY = "inherit"
SIZE_KEY = "size"
SIZES_FILE = Path(__file__).with_name("model_sizes.yaml")


def load_composed(path: Path, _chain: tuple[Path, ...] = ()) -> DictConfig:
    """The recipe at `path` with its `inherit:` parts merged underneath it."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise RecipeError(f"{path}: inherit cycle {cycle}")
    if not path.is_file():
        where = f" (inherited by {_chain[-1]})" if _chain else ""
        raise FileNotFoundError(f"recipe file not found: {path}{where}")
    try:
        raw = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come in several types
        raise RecipeError(f"{path}: cannot parse YAML: {err}") from err
    if not OmegaConf.is_dict(raw):
        raise RecipeError(f"{path}: the recipe must be a mapping of keys, got {type(raw).__name__}")
    parents = raw.pop(INHERIT_KEY, None)
    if parents is None:
        return raw
    if isinstance(parents, str):
        parents = [parents]
    if not OmegaConf.is_list(parents) and not isinstance(parents, list):
        raise RecipeError(f"{path}: {INHERIT_KEY} must be a file name or a list of them")
    parts = [load_composed(path.parent / str(p), (*_chain, path)) for p in parents]
    return OmegaConf.merge(*parts, raw)


def model_sizes() -> dict[str, dict]:
    """The table of sizes: name -> model fields."""
    return OmegaConf.to_container(OmegaConf.load(SIZES_FILE))  # type: ignore[return-value]


def resolve_size(recipe: DictConfig) -> DictConfig:
    """Replace `model.size` by the table's fields (explicit model keys win)."""
    model = recipe.get("model")
    if not OmegaConf.is_dict(model) or SIZE_KEY not in model:
        return recipe
    name = model[SIZE_KEY]
    sizes = model_sizes()
    if name not in sizes:
        raise RecipeError(
            f"model.size: unknown size {name!r}{did_you_mean(str(name), sizes)}; "
            f"valid: {sorted(sizes)}"
        )
    explicit = OmegaConf.masked_copy(model, [k for k in model if k != SIZE_KEY])
    try:
        recipe.model = OmegaConf.merge(sizes[name], explicit)
    except OmegaConfBaseException as err:
        raise RecipeError(f"model: {err}") from err
    return recipe
