"""The MLM training dataloader: what the training code builds and hands to Composer.

Contract: `build_mlm_dataloader(cfg, tokens, global_batch_size, seed, world_size, rank)` gives
this rank's `MLMDataLoader`, whose every pass is one epoch of flat batches (data/flat.py,
docs/interfaces.md section 3); the batch helpers here count its rows, real tokens and packing
efficiency from the host-side layout, and `world_from_environment` is the one reader of the
launcher's world size and rank. Composer saves ``dataloader.dataset.state_dict(sample_in_epoch, True)`` in its checkpoints and
calls ``dataloader.dataset.load_state_dict`` on resume; ``PackedMLMDataset`` implements both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from modernbert.data.batching import BatchSchedule
from modernbert.data.config import BatchSizeWarmup, MLMLoaderConfig
from modernbert.data.dataset import PackedMLMDataset
from modernbert.data.flat import Batch, layout_of
from modernbert.data.masking import MLMMasker
from modernbert.data.streams import DocumentSource
from modernbert.data.tokenizer import TokenSpec


class MLMDataLoader(DataLoader):
    """A DataLoader whose every pass is one epoch of a PackedMLMDataset.

    It tells the dataset, in the main process, that a pass begins (before any worker reads the
    epoch) and counts what it hands out, so ``dataset.state_dict()`` knows where it stands.
    """

    dataset: PackedMLMDataset

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        self.dataset.begin_epoch()
        return self._track(super().__iter__())

    def _track(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for batch in batches:
            self.dataset.note_batch(batch)
            yield batch
        self.dataset.end_epoch()


def world_from_environment() -> tuple[int, int]:
    """(world size, rank) from torch.distributed when initialised, else WORLD_SIZE/RANK."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))


def build_mlm_dataloader(
    cfg: MLMLoaderConfig,
    tokens: TokenSpec,
    global_batch_size: int,
    *,
    seed: int,
    world_size: int | None = None,
    rank: int | None = None,
    batch_size_warmup: BatchSizeWarmup | None = None,
    evaluation: bool = False,
) -> MLMDataLoader:
    """Loader of packed, masked batches of ``global_batch_size / world_size`` rows per rank.

    ``seed`` seeds the masking (with the epoch and row); ``cfg.shuffle_seed`` the document
    order. ``evaluation=True`` replays the same pass (epoch 0) on every iteration, so every
    evaluation sees identical batches and masks.
    """
    default_world, default_rank = world_from_environment()
    world_size = default_world if world_size is None else world_size
    rank = default_rank if rank is None else rank
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if evaluation and batch_size_warmup is not None:
        raise ValueError("batch_size_warmup applies to training loaders, not evaluation=True")
    schedule = BatchSchedule(global_batch_size, world_size, cfg.max_seq_len, batch_size_warmup)
    masker = MLMMasker(tokens, cfg.mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob)
    dataset = PackedMLMDataset(
        DocumentSource(cfg),
        tokens,
        masker,
        schedule,
        max_seq_len=cfg.max_seq_len,
        packing_window=cfg.packing_window,
        shuffle=cfg.shuffle,
        seed=seed,
        drop_last=cfg.drop_last,
        rank=rank,
        fixed_epoch=evaluation,
    )
    workers = cfg.num_workers
    return MLMDataLoader(
        dataset,
        batch_size=None,  # the dataset yields whole batches (their size varies in warmup)
        num_workers=workers,
        prefetch_factor=cfg.prefetch_factor if workers else None,
        persistent_workers=cfg.persistent_workers and workers > 0,
        # pinned host tensors let Composer's non_blocking moves overlap with compute
        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
    )


def num_samples_in_batch(batch: Batch) -> int:
    """Rows of a batch (Composer's samples), from its host-side layout."""
    return layout_of(batch).num_rows


def num_tokens_in_batch(batch: Batch) -> int:
    """Real tokens of a batch (padding does not exist in the flat form), from the host."""
    return layout_of(batch).num_tokens


def composer_token_counts(batch: Batch) -> dict[str, int]:
    """Composer's ``get_num_tokens_in_batch``: ``total`` is the real tokens (the run's token
    clock); ``loss_generating`` the masked ones, so that with
    ``accumulate_train_batch_on_tokens`` microbatch losses are weighted into exactly the
    whole batch's mean over its masked tokens."""
    layout = layout_of(batch)
    return {"total": layout.num_tokens, "loss_generating": layout.num_masked}


def packing_efficiency(batch: Batch) -> float:
    """Fraction of the batch's row slots (rows x max_seq_len) that hold real tokens."""
    layout = layout_of(batch)
    return layout.num_tokens / max(layout.num_rows * layout.row_length, 1)
