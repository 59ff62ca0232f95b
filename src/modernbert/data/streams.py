"""Documents of a stream mixture behind one index space: lengths to plan with, tokens to read.

mosaicml-streaming does the storage work (index files, shard download and caching, mixture
weights); we use its random access and its per-epoch resampling, and order the documents
ourselves so the order depends only on (shuffle_seed, epoch), never on ranks or workers.
"""

from __future__ import annotations

import atexit
import mmap
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from streaming import Stream, StreamingDataset
from streaming.base.shared import SharedArray, SharedBarrier, SharedMemory, SharedScalar
from streaming.base.storage import CloudDownloader

from modernbert.data.config import MLMLoaderConfig
from modernbert.data.epoch_order import PermutedRange
from modernbert.data.mds_format import DOC_LENGTHS_FILE
from modernbert.data.row_index import RowIndex, cache_dir, file_identity
from modernbert.data.shard_hash import ShardValidator
from modernbert.data.shm import open_dataset
from modernbert.errors import DataError

INDEX_FILE = "index.json"


@dataclass(frozen=True)
class StreamInfo:
    """Where one stream lives and which slice of the global sample ids it owns."""

    name: str
    folder: str  # local folder holding index.json and the shards
    remote: str | None  # remote folder (same split), if any
    first_sample: int
    num_samples: int


def _stream_folder(local: str, split: str | None) -> str:
    return os.path.join(local, split) if split else local


def _check_local_stream(name: str, folder: str) -> None:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"stream {name!r}: MDS folder {folder} does not exist")
    if not os.path.isfile(os.path.join(folder, INDEX_FILE)):
        raise FileNotFoundError(
            f"stream {name!r}: no {INDEX_FILE} in {folder} (not an MDS dataset, or an "
            "unfinished conversion)"
        )


class DocumentSource:
    """Random access to every document of the configured streams, plus their token counts."""

    def __init__(self, cfg: MLMLoaderConfig) -> None:
        self.shuffle = cfg.shuffle
        self.shuffle_seed = cfg.shuffle_seed
        streams: list[dict[str, Any]] = []  # Stream arguments (fresh Streams per attempt)
        folders = []
        for name, sc in cfg.streams.items():
            split = sc.split if sc.split is not None else cfg.split
            folder = _stream_folder(sc.local, split)
            if sc.remote is None:
                _check_local_stream(name, folder)
            weights = {"proportion": sc.proportion, "repeat": sc.repeat, "choose": sc.choose}
            weights = {k: v for k, v in weights.items() if v is not None}
            streams.append(
                dict(
                    remote=sc.remote,
                    local=sc.local,
                    split=split or None,
                    download_timeout=cfg.download_timeout,
                    **weights,
                )
            )
            folders.append((name, folder, _stream_folder(sc.remote, split) if sc.remote else None))
        try:
            self._dataset = open_dataset(
                lambda: StreamingDataset(  # fresh Streams per attempt: streaming edits them
                    streams=[Stream(**kwargs) for kwargs in streams],
                    shuffle=cfg.shuffle,
                    shuffle_seed=cfg.shuffle_seed,
                    epoch_size=cfg.epoch_size,
                    sampling_method="balanced",
                ),
                local_only=all(sc.remote is None for sc in cfg.streams.values()),
            )
        except Exception as err:  # streaming raises many types; name what we were opening
            where = ", ".join(f"{n!r} at {f}" for n, f, _ in folders)
            raise DataError(f"could not open MDS streams {where}: {err}") from err

        weakref.finalize(self, release_shared_memory, self._dataset, os.getpid())
        ds = self._dataset
        self._validator = ShardValidator(ds) if cfg.validate_hash else None
        self.streams = [
            StreamInfo(name, folder, remote, int(first), int(count))
            for (name, folder, remote), first, count in zip(
                folders, ds.sample_offset_per_stream, ds.samples_per_stream
            )
        ]
        parts = [self._load_lengths(info, cfg.download_timeout) for info in self.streams]
        self.lengths = parts[0] if len(parts) == 1 else StackedLengths(parts)
        # Every stream taken whole, once: the epoch is a permutation of all ids, evaluated
        # lazily. Otherwise the mixture's per-epoch choice is materialised (O(documents)).
        self._whole = all(
            int(stream.choose) == count
            for stream, count in zip(ds.streams, ds.samples_per_stream, strict=True)
        )
        self._identity = {
            "lengths": [file_identity(os.path.join(s.folder, DOC_LENGTHS_FILE))
                        for s in self.streams if os.path.isfile(os.path.join(s.folder,
                        DOC_LENGTHS_FILE))],
            "indexes": [file_identity(os.path.join(s.folder, INDEX_FILE)) for s in self.streams
                        if os.path.isfile(os.path.join(s.folder, INDEX_FILE))],
            "documents": [s.num_samples for s in self.streams],
            "choose": [int(stream.choose) for stream in ds.streams],
            "shuffle": self.shuffle,
            "shuffle_seed": self.shuffle_seed,
        }  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        # A pickled memory map would carry every length along; send the file names instead.
        state = self.__dict__.copy()
        if self._identity["lengths"] and len(self._identity["lengths"]) == len(self.streams):
            state["lengths"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.lengths is None:
            parts = [map_lengths(f["path"]) for f in self._identity["lengths"]]
            self.lengths = parts[0] if len(parts) == 1 else StackedLengths(parts)

    @property
    def num_documents(self) -> int:
        return len(self.lengths)

    def epoch_documents(self, epoch: int) -> Sequence[int]:
        """Global sample ids of one epoch: the mixture's choice, in a (seed, epoch) order.

        An array, or (streams taken whole) a lazy permutation with the same indexing.
        """
        if self._whole:
            n = self.num_documents
            return PermutedRange(n, (self.shuffle_seed, epoch)) if self.shuffle else _Identity(n)
        _, ids = self._dataset.resample_streams(epoch)
        if self.shuffle:
            ids = ids[np.random.default_rng([self.shuffle_seed, epoch]).permutation(len(ids))]
        return ids.astype(np.int64, copy=False)

    def row_index(self, epoch: int, **packing: int) -> RowIndex:
        """The saved row counts of this epoch's packing plan (row_index.py)."""
        key = {**self._identity, "epoch": epoch, **packing}
        return RowIndex(key, cache_dir(self.streams[0].folder))

    def stream_of(self, sample_id: int) -> StreamInfo:
        firsts = [s.first_sample for s in self.streams]
        return self.streams[int(np.searchsorted(firsts, sample_id, side="right")) - 1]

    def read(self, sample_id: int) -> np.ndarray:
        """Token ids of one document, with errors that name the stream and shard file."""
        try:
            ids = self._dataset.get_item(int(sample_id))["input_ids"]
        except Exception as err:
            raise DataError(self.describe(sample_id, f"cannot read the document: {err}")) from err
        if self._validator is not None:
            problem = self._validator.check(int(self._dataset.spanner[int(sample_id)][0]))
            if problem is not None:
                raise DataError(self.describe(sample_id, problem))
        expected = self.lengths[sample_id]
        if len(ids) != expected:
            raise DataError(
                self.describe(
                    sample_id,
                    f"has {len(ids)} tokens but {DOC_LENGTHS_FILE} says {expected} "
                    "(stale lengths file or corrupt shard)",
                )
            )
        return ids

    def describe(self, sample_id: int, problem: str) -> str:
        info = self.stream_of(sample_id)
        shard_id, _ = self._dataset.spanner[int(sample_id)]
        raw_info, _ = self._dataset.shards[shard_id].file_pairs[0]
        path = os.path.join(info.folder, raw_info.basename)
        index = int(sample_id) - info.first_sample
        return f"stream {info.name!r}: document {index} in shard {path} {problem}"

    def _load_lengths(self, info: StreamInfo, timeout: float) -> np.ndarray:
        path = os.path.join(info.folder, DOC_LENGTHS_FILE)
        if not os.path.isfile(path) and info.remote is not None:
            _fetch(os.path.join(info.remote, DOC_LENGTHS_FILE), path, timeout)
        if not os.path.isfile(path):
            warnings.warn(
                f"stream {info.name!r}: no {DOC_LENGTHS_FILE} in {info.folder}; reading all "
                f"{info.num_samples} documents to measure them (slow for large streams)",
                stacklevel=3,
            )
            return np.array(
                [
                    len(self._dataset.get_item(info.first_sample + i)["input_ids"])
                    for i in range(info.num_samples)
                ],
                dtype=np.int64,
            )
        lengths = map_lengths(path)
        if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
            raise DataError(
                f"stream {info.name!r}: {path} must be a 1-D integer array, got "
                f"{lengths.dtype} with shape {lengths.shape}"
            )
        if len(lengths) != info.num_samples:
            raise DataError(
                f"stream {info.name!r}: {path} lists {len(lengths)} documents but the MDS "
                f"index has {info.num_samples}"
            )
        return lengths


def map_lengths(path: str) -> np.ndarray:
    """A lengths file memory-mapped: one copy in the page cache serves every process of the
    node. Reads follow the shuffled order, so the map is marked random: without that, each
    page fault maps its neighbours too, and a window of 8192 random lengths of a 1B-document
    file put ~500 MB of the file into the process's resident set instead of ~40 MB."""
    lengths = np.load(path, mmap_mode="r")
    handle = getattr(lengths, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_RANDOM"):
        handle.madvise(mmap.MADV_RANDOM)
    return lengths


class StackedLengths:
    """Several streams' lengths (memory maps) behind one index space, without a copy."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, ids: int | np.integer | np.ndarray) -> np.ndarray | int:
        if np.ndim(ids) == 0:
            k = int(np.searchsorted(self.starts, int(ids), side="right")) - 1
            return int(self.parts[k][int(ids) - self.starts[k]])
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(len(ids), dtype=np.int64)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        for k, part in enumerate(self.parts):
            hit = which == k
            if hit.any():
                out[hit] = part[ids[hit] - self.starts[k]]
        return out


class _Identity:
    """The unshuffled order: position i holds document i."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int | slice | np.integer) -> int | np.ndarray:
        if isinstance(index, slice):
            lo, hi, _ = index.indices(self.n)
            return np.arange(lo, hi, dtype=np.int64)
        return int(index)


def _fetch(remote: str, local: str, timeout: float) -> None:
    """Copy a remote file; failing is not an error (the caller falls back), but is reported."""
    tmp = f"{local}.tmp-{os.getpid()}"  # ranks of a node may fetch at once: rename atomically
    try:
        CloudDownloader.direct_download(remote, tmp, timeout)
        os.replace(tmp, local)
    except Exception as err:  # any storage backend error
        warnings.warn(f"could not fetch {remote}: {err}", stacklevel=4)
        if os.path.exists(tmp):
            os.remove(tmp)


def _shared_memories(obj: Any, depth: int = 0) -> Iterator[SharedMemory]:
    if isinstance(obj, SharedMemory):
        yield obj
    elif depth < 3 and isinstance(
        obj, (StreamingDataset, SharedArray, SharedScalar, SharedBarrier)
    ):
        for value in vars(obj).values():
            yield from _shared_memories(value, depth + 1)


def release_shared_memory(dataset: StreamingDataset, owner_pid: int) -> None:
    """Free a StreamingDataset's shared memory when we drop it.

    streaming registers every block with atexit, which keeps them (and a file descriptor each)
    alive until the process ends, and a later dataset scans all live blocks, so a process that
    builds loaders repeatedly (a test suite, evaluation loaders) runs out of descriptors.
    """
    if os.getpid() != owner_pid:  # a forked worker must not unlink its parent's blocks
        return
    for shm in _shared_memories(dataset):
        atexit.unregister(shm.cleanup)
        shm.cleanup()
