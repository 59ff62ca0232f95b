"""Where a command may write a folder: never over an input, never over something it did not make.

Every command that writes a folder (``convert_to_mds.py``, ``train_tokenizer.py``,
``export_hf.py``) checks its output here first. An existing folder is replaced only with
``--overwrite``, and even then only when it is a previous output of the same kind (it holds
that kind's marker file); an output that is, contains or lies inside one of the command's
inputs is refused, since replacing it would delete the input or a rerun would read it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# kind of output -> files one of which a previous output of that kind always holds
OUTPUT_MARKERS: dict[str, tuple[str, ...]] = {
    "MDS conversion": ("summary.json", "train/index.json", "val/index.json"),
    "tokenizer": ("tokenizer.json",),
    "Hugging Face model": ("config.json",),
}


def _paths(inputs: Iterable[object]) -> list[Path]:
    """The existing local paths among the inputs (``hf:...`` specs, hub names are skipped)."""
    found = []
    for item in inputs:
        if isinstance(item, (str, Path)) and ":" not in str(item).split("/")[0]:
            path = Path(item).expanduser()
            if path.exists():
                found.append(path.resolve())
    return found


def check_not_over_inputs(output: str | Path, inputs: Iterable[object]) -> Path:
    """Raise FileExistsError unless ``output`` is outside every local input and holds none."""
    target = Path(output).expanduser().resolve()
    for source in _paths(inputs):
        if source == target or target in source.parents:
            raise FileExistsError(
                f"output {target} is or contains the input {source}; writing there would "
                "delete it: choose another output folder"
            )
        if source in target.parents:
            raise FileExistsError(
                f"output {target} lies inside the input {source}; a rerun would read its own "
                "output: choose an output folder outside the inputs"
            )
    return target


def check_output_folder(
    output: str | Path, kind: str, overwrite: bool, inputs: Iterable[object] = ()
) -> Path:
    """Raise FileExistsError (one line, naming the path) unless ``output`` may be written."""
    if kind not in OUTPUT_MARKERS:
        raise ValueError(f"unknown output kind {kind!r}; valid: {sorted(OUTPUT_MARKERS)}")
    target = check_not_over_inputs(output, inputs)
    if target.is_file():
        raise FileExistsError(f"output {target} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output {target} already exists; pass --overwrite to replace it")
        markers = OUTPUT_MARKERS[kind]
        if not any((target / marker).is_file() for marker in markers):
            raise FileExistsError(
                f"output {target} exists and is not a previous {kind} output (it has none of "
                f"{', '.join(markers)}); refusing to replace it, even with --overwrite"
            )
    return target
