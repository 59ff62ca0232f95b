"""Opening datasets while other processes use streaming on the same machine: a shared-memory
prefix taken by a process that started at the same moment is retried, not fatal."""

from __future__ import annotations

import numpy as np
from streaming.base.shared import prefix as shm_prefix

from modernbert.data import MLMLoaderConfig, StreamConfig
from modernbert.data.streams import DocumentSource
from modernbert.data.synthetic import random_documents, write_mds_documents


def test_a_prefix_taken_at_the_same_moment_is_retried(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    write_mds_documents(
        tmp_path / "train", random_documents(rng.integers(5, 40, 30), rng, low=5, high=100)
    )
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(tmp_path), proportion=1.0)}, epoch_size=30
    )
    first = DocumentSource(cfg)  # holds its prefix, like a rank that started first
    taken = first._dataset._shm_prefix_int
    real = shm_prefix._check_and_find_retrying
    calls = {"n": 0}

    def racing(*args, **kwargs):
        # The first search sees `taken` as free (the other process had not created it yet).
        calls["n"] += 1
        return taken if calls["n"] <= len(shm_prefix.SHM_TO_CLEAN) else real(*args, **kwargs)

    monkeypatch.setattr(shm_prefix, "_check_and_find_retrying", racing)
    second = DocumentSource(cfg)
    assert calls["n"] > len(shm_prefix.SHM_TO_CLEAN)  # it collided, then searched again
    assert second._dataset._shm_prefix_int != taken
    assert np.array_equal(second.read(3), first.read(3))
