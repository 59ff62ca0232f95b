"""Packed, masked MLM batches of one rank, deterministic and exactly resumable.

Per epoch the global row sequence is fixed by (shuffle_seed, epoch) alone: documents in a
seeded order, packed window by window. Global batch j takes the next ``schedule.global_size(t)``
rows; rank r takes the r-th contiguous slice of it; dataloader worker w builds the batches
j = start + w, start + w + W, ... which the DataLoader hands out round-robin, i.e. in order.
So the batches of a rank do not depend on the number of workers, the union over ranks does not
depend on the world size, and a resume only needs (epoch, samples seen in the epoch).

Epoch control lives in the main process (``begin_epoch``/``state_dict``/``load_state_dict``,
driven by ``MLMDataLoader``); workers learn the epoch and first batch of a pass from a small
shared-memory tensor, which also reaches persistent workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from modernbert.data.batching import BatchSchedule
from modernbert.data.flat import Batch, FlatBatchBuilder, layout_of
from modernbert.data.masking import MLMMasker
from modernbert.data.packing import SPECIALS_PER_PIECE, EpochPacking, GatheredLengths
from modernbert.data.streams import DocumentSource
from modernbert.data.tokenizer import TokenSpec
from modernbert.errors import DataError

STATE_VERSION = 1
# What must match between a checkpoint and the loader that resumes it (elastic: the world
# size may change as long as batch boundaries still fall on the same samples).
_PLAN_KEYS = ("shuffle_seed", "seed", "max_seq_len", "packing_window", "num_documents")


class PackedMLMDataset(IterableDataset):
    """Yields whole collated batches (use a DataLoader with batch_size=None)."""

    def __init__(
        self,
        source: DocumentSource,
        tokens: TokenSpec,
        masker: MLMMasker,
        schedule: BatchSchedule,
        *,
        max_seq_len: int,
        packing_window: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        rank: int,
        fixed_epoch: bool = False,
    ) -> None:
        if not 0 <= rank < schedule.world_size:
            raise ValueError(f"rank must be in [0, {schedule.world_size}), got {rank}")
        self.source = source
        self.tokens = tokens
        self.masker = masker
        self.schedule = schedule
        self.max_seq_len = max_seq_len
        self.packing_window = packing_window
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = schedule.world_size
        self.fixed_epoch = fixed_epoch  # evaluation: every pass replays epoch 0
        # (epoch, first batch, batches per epoch) of the pass being run, shared with workers.
        self._pass = torch.zeros(3, dtype=torch.int64).share_memory_()
        # Main-process bookkeeping.
        self._next_epoch = 0
        self._pending: tuple[int, int] | None = None  # (first batch, samples) after a load
        self._epoch: int | None = None  # epoch of the pass in progress
        self._offset_samples = 0  # global rows before the pass's first batch
        self._seen_samples = 0  # global rows handed out by the pass
        self._seen_batches = 0
        self._exhausted = False
        # Per-process caches.
        self._plans: dict[int, tuple[np.ndarray, EpochPacking]] = {}
        self._first_batch: dict[int, int] = {0: 0}
        self._cap: int | None = None  # batches per epoch (those of epoch 0)
        self._last_doc: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.uint32))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"] = {}  # workers re-plan what they need; plans can be large
        return state

    # ---- the plan of an epoch -------------------------------------------------------------

    def _plan(self, epoch: int) -> tuple[np.ndarray, EpochPacking]:
        if epoch not in self._plans:
            docs = self.source.epoch_documents(epoch)
            seed = (self.source.shuffle_seed, epoch) if self.shuffle else None
            index = self.source.row_index(
                epoch, max_seq_len=self.max_seq_len, packing_window=self.packing_window
            )
            lengths = GatheredLengths(self.source.lengths, docs)
            plan = EpochPacking(lengths, self.max_seq_len, self.packing_window, seed, index)
            if len(self._plans) >= 2:
                del self._plans[min(self._plans)]
            self._plans[epoch] = (docs, plan)
        return self._plans[epoch]

    def _layout(
        self, epoch: int, start: int = 0, capped: bool = True
    ) -> Iterator[tuple[int, int, int]]:
        """(batch index in epoch, first global row, global rows) of batches start, start+1, ..."""
        _, plan = self._plan(epoch)
        t0 = self._epoch_first_batch(epoch)
        base = self.schedule.rows_before(t0)
        j, first = start, self.schedule.rows_before(t0 + start) - base
        stop = self.batches_per_epoch() if capped else None
        while stop is None or j < stop:
            size = self.schedule.global_size(t0 + j)
            if not plan.has_rows(first + size):
                if not self.drop_last:  # a last, smaller batch every rank gets a share of
                    size = (plan.total_rows() - first) // self.world_size * self.world_size
                    if size > 0:
                        yield j, first, size
                return
            yield j, first, size
            first, j = first + size, j + 1

    def _epoch_first_batch(self, epoch: int) -> int:
        """Global batch index where `epoch` starts, clamped at the end of the warmup (after
        which every batch has the same size, so later epochs need no replay)."""
        if self.fixed_epoch:
            return 0
        n_warm = self.schedule.warmup_batches
        e = max(k for k in self._first_batch if k <= epoch)
        while e < epoch:
            t = self._first_batch[e]
            if t < n_warm:  # count this epoch's batches, up to the end of the warmup
                for _ in self._layout(e):
                    t += 1
                    if t >= n_warm:
                        break
            self._first_batch[e + 1] = min(t, n_warm)
            e += 1
        return self._first_batch[epoch]

    def batches_per_epoch(self) -> int:
        """The batches of epoch 0 (plans it whole), the most any epoch yields.

        Later epochs pack a little differently and may hold a batch more; they are cut to this
        length, as Composer cuts every epoch to ``len(dataloader)``, so that an uninterrupted
        run and a resumed one cut at the same place.
        """
        if self._cap is None:
            self._cap = sum(1 for _ in self._layout(0, capped=False))
        return self._cap

    def rows_in_epoch(self, epoch: int = 0) -> int:
        """Packed rows (all ranks together) the documents of `epoch` fill."""
        return self._plan(epoch)[1].total_rows()

    def num_batches(self, epoch: int = 0) -> int:
        """Batches every rank yields in a full pass over `epoch` (plans the whole epoch)."""
        return sum(1 for _ in self._layout(epoch))

    def __len__(self) -> int:
        return self.batches_per_epoch()

    # ---- building batches (main process or worker) ----------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        epoch, start, self._cap = (int(v) for v in self._pass.tolist())
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for j, first, size in self._layout(epoch, start):
            if (j - start) % workers == worker:
                rows = size // self.world_size
                yield self._collate(epoch, first + self.rank * rows, rows)

    def _document(self, sample_id: int) -> np.ndarray:
        if self._last_doc[0] != sample_id:  # a long document spans consecutive rows
            ids = self.source.read(sample_id)
            if len(ids) and int(ids.max()) >= self.tokens.vocab_size:
                raise DataError(
                    self.source.describe(
                        sample_id,
                        f"has token id {int(ids.max())} >= vocab_size {self.tokens.vocab_size} "
                        "(shards tokenized with another tokenizer?)",
                    )
                )
            self._last_doc = (sample_id, ids)
        return self._last_doc[1]

    def _collate(self, epoch: int, first_row: int, n_rows: int) -> Batch:
        """The flat batch of global rows first_row.. (data/flat.py): each row's pieces as
        ``[CLS] tokens [SEP]`` documents, masked with the row's own generator."""
        docs, plan = self._plan(epoch)
        builder = FlatBatchBuilder(self.max_seq_len)
        cls_id, sep_id = self.tokens.cls_id, self.tokens.sep_id
        for i, (doc, start, length) in enumerate(plan.rows(first_row, first_row + n_rows)):
            seqlens = length + SPECIALS_PER_PIECE
            row = np.empty(int(seqlens.sum()), dtype=np.int64)
            c = 0
            for d, s, n in zip(doc.tolist(), start.tolist(), length.tolist()):
                row[c] = cls_id
                row[c + 1 : c + 1 + n] = self._document(int(docs[d]))[s : s + n]
                row[c + 1 + n] = sep_id
                c += n + 2
            rng = self.masker.row_rng(self.seed, epoch, first_row + i)
            labels = self.masker.mask_row(row, rng)
            builder.add_row(row, seqlens, labels)
        return builder.build()

    # ---- epochs and resumption (main process) ---------------------------------------------

    def begin_epoch(self) -> None:
        """Start a pass: the next epoch, or the rest of a loaded one. Call before workers read."""
        epoch = self._next_epoch
        start, offset = self._pending or (0, 0)
        self._pending = None
        self._pass[0], self._pass[1], self._pass[2] = epoch, start, self.batches_per_epoch()
        self._epoch, self._offset_samples = epoch, offset
        self._seen_samples = self._seen_batches = 0
        self._exhausted = False
        self._next_epoch = epoch if self.fixed_epoch else epoch + 1

    def note_batch(self, batch: Batch) -> None:
        self._seen_batches += 1
        self._seen_samples += layout_of(batch).num_rows * self.world_size

    def end_epoch(self) -> None:
        self._exhausted = True

    def state_dict(self, num_samples: int | None = None, from_beginning: bool = True) -> dict:
        """Where the data stands, as Composer asks for it.

        `num_samples` is Composer's ``sample_in_epoch``: rows of all ranks since the start of
        the epoch (``from_beginning``) or since this run resumed. None uses the rows this loader
        handed out. Zero after a pass that yielded batches means the epoch is over.
        """
        if self._epoch is None:  # nothing iterated since construction or load
            epoch, samples = self._next_epoch, (self._pending or (0, 0))[1]
        elif num_samples is None:
            epoch, samples = self._epoch, self._offset_samples + self._seen_samples
            if self._exhausted:
                epoch, samples = self._next_epoch, 0
        else:
            epoch = self._epoch
            samples = num_samples if from_beginning else self._offset_samples + num_samples
            if samples == 0 and (self._seen_batches or self._exhausted):
                epoch = self._next_epoch
        return {
            "version": STATE_VERSION,
            "epoch": int(epoch),
            "sample_in_epoch": int(samples),
            **self._plan_identity(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a saved position: the next pass yields the batches from there on."""
        for key in ("epoch", "sample_in_epoch", *_PLAN_KEYS):
            if key not in state:
                raise ValueError(f"data loader state lacks key {key!r} (got {sorted(state)})")
        mine = self._plan_identity()
        for key in _PLAN_KEYS:
            if state[key] != mine[key]:
                raise ValueError(
                    f"data loader state was saved with {key}={state[key]!r} but this loader has "
                    f"{key}={mine[key]!r}: the saved position would point at other data"
                )
        epoch, samples = int(state["epoch"]), int(state["sample_in_epoch"])
        if epoch < 0 or samples < 0:
            raise ValueError(f"invalid data loader state: epoch={epoch}, samples={samples}")
        self._next_epoch = epoch
        self._pending = (self._batch_at(epoch, samples), samples)
        self._epoch = None

    def _batch_at(self, epoch: int, samples: int) -> int:
        """Index of the batch that starts after `samples` rows of the epoch."""
        consumed = 0
        for j, _, size in self._layout(epoch):
            if consumed == samples:
                return j
            consumed += size
            if consumed > samples:
                break
        else:
            if consumed == samples:  # the whole epoch was consumed
                return self.num_batches(epoch)
        raise ValueError(
            f"sample_in_epoch={samples} of epoch {epoch} is not at a batch boundary of this "
            f"loader (global batch {self.schedule.target}, world size {self.world_size}, "
            "batch-size warmup): resume with the batch settings of the saved run"
        )

    def _plan_identity(self) -> dict[str, int]:
        return {
            "shuffle_seed": self.source.shuffle_seed,
            "seed": self.seed,
            "max_seq_len": self.max_seq_len,
            "packing_window": self.packing_window,
            "num_documents": self.source.num_documents,
        }
