"""Data for the learning-efficiency benchmark: the demo corpus, one-piece rows, eval batches.

Both sides of `modernbert.bench.quality` are judged on the same validation rows and masks:
every validation document is cut into the pieces the loader would make (`[CLS] piece [SEP]`,
at most `max_seq_len` tokens), one piece per row, masked at 15% by our masker with a fixed
seed. One row holds one piece so that a model without document boundaries (transformers')
sees exactly what ours sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.config import EVAL_MLM_PROBABILITY, MLMLoaderConfig, StreamConfig
from ..data.masking import MLMMasker
from ..data.packing import split_documents
from ..data.streams import DocumentSource
from ..data.tokenizer import TokenSpec

DEMO_VOCAB = 4096  # the demo tokenizer's size (scripts/demo.sh)
EVAL_MASK_SEED = 0  # masks of the validation rows: the same for every run and side


def ensure_demo_data(out: Path) -> tuple[Path, Path]:
    """(tokenizer folder, MDS folder) of the demo corpus under `out`, built when missing the
    way scripts/demo.sh builds them (this machine's Python packages; no network)."""
    from ..data.prep.inputs import iter_texts
    from ..data.prep.local_corpus import LocalCorpus
    from ..data.prep.to_mds import convert
    from ..data.tokenizer import train_tokenizer

    tok_dir, mds_dir = out / "tokenizer", out / "mds"
    if not (tok_dir / "tokenizer.json").is_file():
        print(f"building the demo tokenizer in {tok_dir}", flush=True)
        train_tokenizer(
            iter_texts([LocalCorpus()], None, None), vocab_size=DEMO_VOCAB, output_dir=tok_dir
        )
    if not (mds_dir / "summary.json").is_file():
        print(f"building the demo MDS shards in {mds_dir}", flush=True)
        convert([LocalCorpus()], tok_dir, mds_dir, workers=2)
    return tok_dir, mds_dir


def document_source(mds: str | Path, split: str) -> DocumentSource:
    """Every document of one split of an MDS folder, in stored order."""
    stream = StreamConfig(local=str(mds))
    return DocumentSource(MLMLoaderConfig(streams={"data": stream}, split=split, shuffle=False))


def piece_rows(
    source: DocumentSource, tokens: TokenSpec, max_seq_len: int, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) `[pieces, max_seq_len]`: one `[CLS] piece [SEP]` per row,
    padded at the end; `order` permutes the pieces (None: document order)."""
    doc, start, length = split_documents(source.lengths, max_seq_len)
    if order is not None:
        doc, start, length = doc[order], start[order], length[order]
    ids = np.full((len(doc), max_seq_len), tokens.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    cache: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))
    for r, (d, s, n) in enumerate(zip(doc.tolist(), start.tolist(), length.tolist())):
        if cache[0] != d:
            cache = (d, source.read(d).astype(np.int64))
        ids[r, 0] = tokens.cls_id
        ids[r, 1 : n + 1] = cache[1][s : s + n]
        ids[r, n + 1] = tokens.sep_id
        mask[r, : n + 2] = 1
    return ids, mask


def num_pieces(source: DocumentSource, max_seq_len: int) -> int:
    return len(split_documents(source.lengths, max_seq_len)[0])


def eval_batches(
    mds: str | Path, tokens: TokenSpec, max_seq_len: int, batch_rows: int = 64
) -> list[dict[str, torch.Tensor]]:
    """The validation rows, masked at 15% (80/10/10) with fixed per-row seeds, in batches."""
    ids, mask = piece_rows(document_source(mds, "val"), tokens, max_seq_len)
    masker = MLMMasker(tokens, EVAL_MLM_PROBABILITY)
    labels = np.stack(
        [masker.mask_row(row, masker.row_rng(EVAL_MASK_SEED, 0, r)) for r, row in enumerate(ids)]
    )
    out = []
    for lo in range(0, len(ids), batch_rows):
        part = slice(lo, lo + batch_rows)
        out.append(
            {
                "input_ids": torch.from_numpy(ids[part]),
                "attention_mask": torch.from_numpy(mask[part]),
                "labels": torch.from_numpy(labels[part]),
            }
        )
    return out
