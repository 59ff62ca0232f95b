"""Batch tokenization, in this process or in a pool of worker processes, results in order.

With one worker, a background thread runs the Rust tokenizer (which releases the GIL and
uses every core) while the main thread reads the next batch and writes the last one. With
more, batches go to spawned processes (not forked: the Rust thread pool does not survive a
fork) that import only numpy and `tokenizers`; the tokenizer travels to them as JSON.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import chain
from multiprocessing import get_context
from typing import TypeVar

import numpy as np
from tokenizers import Tokenizer

T = TypeVar("T")
Encoded = tuple[np.ndarray, np.ndarray]  # (all ids of the batch as uint32, per-document lengths)

_worker_tokenizer: Tokenizer | None = None


def load_backend(tokenizer_json: str) -> Tokenizer:
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_truncation()  # documents are kept whole; packing splits them later
    tok.no_padding()
    return tok


def encode_texts(tok: Tokenizer, texts: list[str]) -> Encoded:
    """Token ids of every text, without special tokens, flattened for cheap transfer."""
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    flat = np.fromiter(
        chain.from_iterable(e.ids for e in encodings), dtype=np.uint32, count=int(lengths.sum())
    )
    return flat, lengths


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    # One process per core already; Rust threads on top would oversubscribe the CPU.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = load_backend(tokenizer_json)


def _encode_in_worker(texts: list[str]) -> Encoded:
    assert _worker_tokenizer is not None, "worker not initialised"
    return encode_texts(_worker_tokenizer, texts)


class BatchEncoder:
    """Encode batches with `workers` processes (1 = a thread of this process)."""

    def __init__(self, tokenizer_json: str, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._tok = load_backend(tokenizer_json)
        self._pool: Executor | None
        if workers == 1:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
        else:
            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(tokenizer_json,),
            )

    def _submit(self, texts: list[str]) -> Future[Encoded]:
        if self._pool is None:
            raise RuntimeError("BatchEncoder is closed")
        if isinstance(self._pool, ThreadPoolExecutor):
            return self._pool.submit(encode_texts, self._tok, texts)
        return self._pool.submit(_encode_in_worker, texts)

    def map(self, batches: Iterable[tuple[list[str], T]]) -> Iterator[tuple[Encoded, T]]:
        """Encode (texts, payload) batches; yields (encoded, payload) in input order.

        At most 2 batches per worker are in flight, so memory stays bounded however large
        the input is.
        """
        pending: deque[tuple[Future[Encoded], T]] = deque()
        for texts, payload in batches:
            pending.append((self._submit(texts), payload))
            if len(pending) >= 2 * self.workers:
                future, ready = pending.popleft()
                yield future.result(), ready
        while pending:
            future, ready = pending.popleft()
            yield future.result(), ready

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
