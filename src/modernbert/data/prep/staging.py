"""Write into a temp folder beside the output and rename it into place only when complete.

An interrupted or failed conversion therefore never leaves a folder that looks complete.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_output(output: Path, overwrite: bool) -> None:
    """Fail early (before any work) if `output` cannot be (re)placed."""
    if output.is_file():
        raise FileExistsError(f"output {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"output {output} already exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"parent folder of output does not exist: {output.parent}")


@contextmanager
def staged_output(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp folder; on success it becomes `output`, on any error it is removed."""
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite)
    tmp = output.with_name(f"{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        _publish(tmp, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, output: Path, overwrite: bool) -> None:
    check_output(output, overwrite)  # someone may have written it meanwhile
    old = None
    if output.is_dir():
        if any(output.iterdir()):
            old = output.with_name(f"{output.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            output.rename(old)
        else:
            output.rmdir()
    tmp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
