"""Errors a user can cause (bad data, a checkpoint that cannot be used, a folder in use).

They carry a message that names the problem in one line, so the command-line shells print
``error: MESSAGE`` and exit with ``exit_code`` instead of showing a Python traceback. A
traceback stays for what is not the user's doing (a bug), where it is the useful part.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message is complete on its own."""

    exit_code = 1


class DataError(UserError, ValueError):
    """Training data that cannot be used as it is: a corrupt shard, a stale lengths file,
    token ids beyond the vocabulary, too few rows for one batch. (A ValueError too, so callers
    that caught the loader's ValueErrors keep working.)"""


def one_line(err: BaseException) -> str:
    """The message of ``err`` for a terminal: an error re-raised from a DataLoader worker
    carries the worker's whole traceback in its text; keep only the original message."""
    text = str(err).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    _, sep, message = last.partition(": ")
    return message if sep else last


# What gloo says when another rank of the job is gone (killed, crashed, its host lost).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer")


def peer_lost(err: BaseException) -> str | None:
    """A one-line message when ``err`` means another rank died, else None."""
    text = str(err)
    if not any(sign in text for sign in PEER_LOST):
        return None
    detail = text.strip().splitlines()[-1][:200]
    return (
        f"another rank of this job is gone ({detail}); stopping this rank too. Relaunch the "
        "job to resume from its last checkpoint"
    )
