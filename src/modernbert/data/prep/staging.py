"""Write into a temp folder beside the output and rename it into place only when complete.

An interrupted or failed conversion therefore never leaves a folder that looks complete, and
the temp folders of a killed one (whose process is gone) are removed by the next run.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modernbert.safe_output import check_output_folder

OUTPUT_KIND = "MDS conversion"


def check_output(output: Path, overwrite: bool) -> None:
    """Fail early (before any work) if `output` cannot be (re)placed: only a previous
    conversion output is replaced, and only with `overwrite`."""
    check_output_folder(output, OUTPUT_KIND, overwrite)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"parent folder of output does not exist: {output.parent}")


@contextmanager
def staged_output(output: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp folder; on success it becomes `output`, on any error it is removed."""
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite)
    remove_abandoned(output)
    tmp = output.with_name(f"{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        _publish(tmp, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_abandoned(output: Path) -> list[Path]:
    """Remove the temp (and half-replaced old) folders of conversions into `output` whose
    process no longer runs: a killed conversion leaves them behind."""
    removed = []
    for leftover in output.parent.glob(f"{output.name}.*-*-*"):
        kind, _, rest = leftover.name[len(output.name) + 1 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


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
