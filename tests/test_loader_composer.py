"""Resumption through a real Composer Trainer: its checkpoint carries the loader position.

A tiny model records a fingerprint of every batch it trains on; a run resumed from a
mid-epoch checkpoint must train on exactly the batches the uninterrupted run trained on next.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

composer = pytest.importorskip("composer")
from composer import Trainer  # noqa: E402
from composer.core import DataSpec  # noqa: E402
from composer.models import ComposerModel  # noqa: E402

from modernbert.data import (  # noqa: E402
    BatchSizeWarmup,
    MLMLoaderConfig,
    StreamConfig,
    build_mlm_dataloader,
    num_samples_in_batch,
    num_tokens_in_batch,
    split_flat_batch,
)
from modernbert.data.synthetic import lognormal_lengths, random_documents, write_mds_documents  # noqa: E402
from modernbert.data.tokenizer import TokenSpec  # noqa: E402

VOCAB = 200
TOKENS = TokenSpec(
    cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids=(0, 1, 2, 3, 4), vocab_size=VOCAB
)


class Recorder(ComposerModel):
    """Embedding + linear MLM head; remembers what each training batch held."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 8)
        self.head = torch.nn.Linear(8, VOCAB)
        self.seen: list[tuple[int, int, int]] = []

    def forward(self, batch):
        if self.training:
            ids, positions = batch["input_ids"], batch["masked_positions"]
            weights = torch.arange(ids.numel())
            self.seen.append(
                (
                    num_samples_in_batch(batch),
                    int((ids * weights).sum()),
                    int((batch["masked_labels"] * weights[positions]).sum()),
                )
            )
        return self.head(self.embed(batch["input_ids"].index_select(0, batch["masked_positions"])))

    def loss(self, outputs, batch):
        return torch.nn.functional.cross_entropy(outputs, batch["masked_labels"])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("composer")
    lengths = lognormal_lengths(80, rng, median=20, sigma=1.0, cap=200)
    write_mds_documents(root / "train", random_documents(lengths, rng, low=5, high=VOCAB))
    return root


def _train(data: Path, save: Path, load: str | None = None) -> list[tuple[int, int, int]]:
    cfg = MLMLoaderConfig(
        streams={"s": StreamConfig(local=str(data))}, max_seq_len=32, packing_window=40
    )
    loader = build_mlm_dataloader(
        cfg,
        TOKENS,
        4,
        seed=1,
        world_size=1,
        rank=0,
        batch_size_warmup=BatchSizeWarmup(start_batch_size=1, warmup_tokens=32 * 20),
    )
    model = Recorder()
    trainer = Trainer(
        model=model,
        train_dataloader=DataSpec(
            loader,
            get_num_samples_in_batch=num_samples_in_batch,
            get_num_tokens_in_batch=num_tokens_in_batch,
            split_batch=split_flat_batch,
        ),
        optimizers=torch.optim.SGD(model.parameters(), lr=0.01),
        max_duration="2ep",
        device="cpu",
        device_train_microbatch_size=64,  # the loader's batch size varies (warmup)
        save_folder=str(save),
        save_interval="5ba",
        save_num_checkpoints_to_keep=-1,
        load_path=load,
        progress_bar=False,
        log_to_console=False,
        loggers=[],
    )
    trainer.fit()
    trainer.close()
    return model.seen


def test_composer_resume_trains_on_the_same_batches(data, tmp_path):
    full = _train(data, tmp_path / "full")
    per_epoch = len(full) // 2
    assert per_epoch > 5  # checkpoints inside epoch 0 (during the warmup) and inside epoch 1
    for batch in (5, 5 * (per_epoch // 5 + 1)):
        (checkpoint,) = (tmp_path / "full").glob(f"ep*-ba{batch}-rank0.pt")
        resumed = _train(data, tmp_path / f"resumed{batch}", load=str(checkpoint))
        assert resumed == full[batch:], f"resumed from {checkpoint.name}"
