"""The MDS dataset layout that data prep writes and the loader reads (docs/interfaces.md 1).

One place for the file names and columns, so the writer, the loader and the synthetic test
data cannot drift apart.
"""

from __future__ import annotations

DOC_LENGTHS_FILE = "doc_lengths.npy"
"""Token count of every sample of a split, in sample order (the loader plans from it)."""


def mds_columns(dtype: str) -> dict[str, str]:
    """MDS columns of a split whose token ids are stored as `dtype` (uint16 or uint32)."""
    return {"input_ids": f"ndarray:{dtype}", "source": "str", "language": "str"}
