"""Learning efficiency: validation MLM loss after the same real-token budget and schedule.

Two kinds of run, one evaluation:

- `ours`: the Composer trainer (`modernbert.train.trainer.run`, what `main.py` does) on a
  recipe, overridden to the budget's duration, warmup, linear decay and clipping.
- `plain`: a plain PyTorch loop whose every part can be swapped one at a time (the
  ablations): the model (`hf`: transformers' ModernBertForMaskedLM, or `ours`), the
  optimizer (`adamw`: torch AdamW, or a name from our registry with the recipe's settings),
  the masking (`hf`: transformers' DataCollatorForLanguageModeling, or `ours`) and the rows
  (`pieces`: one `[CLS] piece [SEP]` per row, pieces shuffled globally, a fixed number a
  step; `packed`: our loader's packed batches, which also brings our masking; `unpacked`: the
  loader's batches, one piece a row; `loader_order`: the loader's pieces in its order, a fixed
  number a step; `loader_steps`: the plain loop's own order, as many pieces a step as the
  loader's batches hold). Its defaults are what a new user writes with transformers alone.

Both start from the same weights for the same seed (ours, seeded as the trainer seeds them,
converted to transformers when the model is `hf`) and are scored by `masked_lm_loss` on the
same validation rows and masks (`quality_data.eval_batches`). Needs the training stack.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.masking import IGNORE_INDEX
from .quality_data import document_source, eval_batches, num_pieces, piece_rows

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Budget:
    """The schedule both sides share: linear warmup over the first `warmup_fraction` of the
    real tokens, then linear decay to `alpha_f` at the end; gradients clipped to
    `max_grad_norm` (the issue's set-up)."""

    tokens: int = 1_409_000
    warmup_fraction: float = 0.1
    alpha_f: float = 0.1
    max_grad_norm: float | None = 1.0

    def lr_multiplier(self, tokens_seen: int) -> float:
        """The same function of real tokens seen as our `warmup_stable_decay` with
        `t_decay = (1 - warmup_fraction) dur`."""
        warmup = self.warmup_fraction * self.tokens
        warm = min(1.0, tokens_seen / warmup) if warmup > 0 else 1.0
        decay_start = warmup
        frac = min(1.0, max(0.0, (tokens_seen - decay_start) / (self.tokens - decay_start)))
        return min(warm, max(self.alpha_f, 1.0 - frac))

    def overrides(self) -> list[str]:
        """Recipe overrides that give the Composer trainer this schedule."""
        clip = "null" if self.max_grad_norm is None else self.max_grad_norm
        return [
            f"max_duration={self.tokens}tok",
            f"scheduler.t_warmup={int(self.warmup_fraction * self.tokens)}tok",
            f"scheduler.t_decay={1 - self.warmup_fraction}dur",
            f"scheduler.alpha_f={self.alpha_f}",
            "scheduler.decay_shape=linear",
            f"max_grad_norm={clip}",
        ]


@dataclass(frozen=True)
class PlainParts:
    """The swappable parts of the plain loop (defaults: transformers as a newcomer uses it)."""

    model: str = "hf"  # hf | ours
    optimizer: str = "adamw"  # adamw (torch, weight decay 0.01) | a registry name
    masking: str = "hf"  # hf | ours
    # pieces | packed (our loader's rows; needs our model) | unpacked (our loader's batches
    # and order, each document moved to a row of its own) | loader_order (the loader's pieces
    # in its order, batch-size pieces a step) | loader_steps (the plain permutation of pieces,
    # cut into steps of as many pieces as the loader's batches hold). With our loader's rows,
    # masking=ours keeps the loader's own masks and masking=hf masks them anew.
    rows: str = "pieces"
    # exact: the LR of a step is the schedule at the tokens seen before it; composer: at the
    # tokens seen before the previous step, as Composer steps schedulers before it advances
    # its clock (so the first two steps both run at the schedule's start)
    schedule: str = "exact"

    def __post_init__(self) -> None:
        choices = {
            "model": ("hf", "ours"),
            "masking": ("hf", "ours"),
            "rows": ("pieces", "packed", "unpacked", "loader_order", "loader_steps"),
            "schedule": ("exact", "composer"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"plain {name} must be one of {valid}, got {getattr(self, name)!r}"
                )
        if self.rows == "packed" and self.model != "ours":
            raise ValueError(
                "plain rows=packed needs model=ours (transformers' model would "
                "attend across the documents of a row)"
            )

    @classmethod
    def parse(cls, spec: str) -> PlainParts:
        """`model=ours,optimizer=stable_adamw` -> PlainParts (unknown keys fail)."""
        values = dict(item.split("=", 1) for item in spec.split(",") if item)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown plain part(s) {unknown}; valid: {sorted(names)}")
        return cls(**values)

    def label(self) -> str:
        defaults = PlainParts()
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(defaults, f.name)
        ]
        return "plain" + (f" ({', '.join(changed)})" if changed else "")


def masked_lm_loss(logits_of: Any, batches: list[Batch]) -> float:
    """Token-weighted mean cross-entropy over the labelled positions of `batches`;
    `logits_of(input_ids, attention_mask)` returns `[B, L, vocab]` logits."""
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = logits_of(b["input_ids"], b["attention_mask"])
            keep = b["labels"] != IGNORE_INDEX
            total += float(
                F.cross_entropy(logits[keep].float(), b["labels"][keep], reduction="sum")
            )
            count += int(keep.sum())
    return total / max(count, 1)


def logits_function(model: torch.nn.Module) -> Any:
    """`(input_ids, attention_mask) -> logits` for our model or transformers'."""
    model.eval()
    if hasattr(model, "head"):  # ours: labels=None returns full logits in the input's layout
        return lambda ids, mask: model(ids, attention_mask=mask).logits
    return lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits


def seeded_model(cfg: Any) -> torch.nn.Module:
    """Our model, initialised exactly as the trainer initialises it for `cfg.seed`."""
    from composer.utils import reproducibility

    from ..model import ModernBertForMaskedLM

    reproducibility.seed_all(cfg.seed)
    return ModernBertForMaskedLM(cfg.model)


def run_overrides(
    seed: int, budget: Budget, metrics_file: Path, shuffle_offset: int = 0
) -> list[str]:
    """Everything besides the schedule that makes a recipe one clean benchmark run; the
    loader's shuffle seed is the run seed + `shuffle_offset`. The recipe's batch-size warmup
    stays (a part of ours the plain loop does not have; `ours:batch_size_warmup=null` turns it
    off, as the issue's comparison did)."""
    return [
        *budget.overrides(),
        f"seed={seed}",
        f"train_loader.shuffle_seed={seed + shuffle_offset}",
        f"run_name=quality-{seed}",
        "eval_loader=null",
        "save_folder=null",
        "autoresume=false",
        "load_path=null",
        "init_from=null",
        "loggers={jsonl: {}}",
        f"metrics_file={metrics_file}",
        "callbacks={}",
    ]


def train_ours(recipe: Path, overrides: list[str]) -> tuple[torch.nn.Module, list[float]]:
    """Fit with the Composer trainer; (trained model, training loss per step)."""
    from ..train.trainer import run

    trainer = run(recipe, overrides)
    model = trainer.state.model.model
    metrics = Path(next(o for o in overrides if o.startswith("metrics_file=")).split("=", 1)[1])
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    losses = [r["loss/train/total"] for r in rows if "loss/train/total" in r]
    return model, losses


def train_plain(
    recipe: Path, overrides: list[str], budget: Budget, parts: PlainParts
) -> tuple[torch.nn.Module, list[float]]:
    """The plain loop: forward, loss, backward, clip, step, LR from real tokens seen."""
    from ..data.tokenizer import TokenSpec, load_tokenizer
    from ..train.config import load_recipe

    cfg = load_recipe(recipe, overrides)
    tokenizer = load_tokenizer(cfg.tokenizer)
    tokens = TokenSpec.from_tokenizer(tokenizer)
    model = seeded_model(cfg)
    if parts.model == "hf":
        from ..hf.model_mapping import to_hf

        model = to_hf(model)
    model.train()
    optimizer = _plain_optimizer(parts.optimizer, model, cfg)
    peak = [g["lr"] for g in optimizer.param_groups]
    batches = plain_batches(cfg, tokenizer, tokens, parts)
    losses: list[float] = []
    seen = before_previous = 0
    while seen < budget.tokens:
        batch = next(batches)
        at = seen if parts.schedule == "exact" else before_previous
        for group, lr in zip(optimizer.param_groups, peak):
            group["lr"] = lr * budget.lr_multiplier(at)
        kwargs = {k: v for k, v in batch.items() if k != "position_ids" or parts.model == "ours"}
        loss = model(**kwargs).loss
        loss.backward()
        if budget.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), budget.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        before_previous = seen
        seen += int(batch["attention_mask"].sum())
        if len(losses) % 25 == 0:
            print(f"step {len(losses)}: loss {losses[-1]:.3f}, {seen} tokens", flush=True)
    return model, losses


def _plain_optimizer(name: str, model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    if name == "adamw":  # torch's AdamW as a newcomer calls it (default weight decay 0.01)
        opt = cfg.optimizer
        return torch.optim.AdamW(model.parameters(), lr=opt.lr, betas=opt.betas, eps=opt.eps)
    from ..train.optim import build_optimizer

    return build_optimizer(dataclasses.replace(cfg.optimizer, name=name), model)


def plain_batches(cfg: Any, tokenizer: Any, tokens: Any, parts: PlainParts):
    """Endless training batches, as `parts.rows` says."""
    masker = _plain_masker(parts.masking, tokenizer, tokens, cfg.train_loader, cfg.seed)
    if parts.rows in ("packed", "unpacked"):
        yield from _loader_batches(cfg, tokens, parts.rows == "unpacked", parts.masking, masker)
    elif parts.rows == "loader_order":
        if parts.masking != "hf":
            raise ValueError("plain rows=loader_order re-batches the pieces: it needs masking=hf")
        yield from _loader_order_batches(cfg, tokens, masker)
    else:
        yield from _permuted_piece_batches(cfg, tokens, masker, parts.rows == "loader_steps")


def _loader(cfg: Any, tokens: Any):
    """The trainer's loader: the same batches, masks and batch-size warmup as `ours`."""
    from ..data.loader import build_mlm_dataloader

    return build_mlm_dataloader(
        cfg.train_loader,
        tokens,
        cfg.global_train_batch_size,
        seed=cfg.seed,
        batch_size_warmup=cfg.batch_size_warmup,
    )


def _loader_batches(cfg: Any, tokens: Any, per_document: bool, masking: str, masker: Any):
    """The loader's batches, padded as a plain loop feeds them; masking=hf masks them anew."""
    from ..data.flat import padded_rows

    loader = _loader(cfg, tokens)
    while True:
        for batch in loader:
            padded = padded_rows(batch, tokens.pad_id, per_document)
            if masking == "hf":
                padded["input_ids"] = unmasked_input_ids(padded)
                padded["labels"] = masker(padded["input_ids"], 0, 0)
            yield padded


def unmasked_input_ids(padded: Batch) -> torch.Tensor:
    """The input ids with every masked position given back its label (the original token)."""
    ids = padded["input_ids"].clone()
    masked = padded["labels"] != IGNORE_INDEX
    ids[masked] = padded["labels"][masked]
    return ids


def _loader_order_batches(cfg: Any, tokens: Any, masker: Any):
    """The loader's pieces, one a row, in the loader's order, cut into batch-size steps."""
    from ..data.flat import padded_rows

    rows = cfg.global_train_batch_size
    ids: list[torch.Tensor] = []
    attention: list[torch.Tensor] = []
    loader = _loader(cfg, tokens)
    while True:
        for batch in loader:
            padded = padded_rows(batch, tokens.pad_id, per_document=True)
            ids.extend(unmasked_input_ids(padded))
            attention.extend(padded["attention_mask"])
            while len(ids) >= rows:
                step_ids, step_mask = torch.stack(ids[:rows]), torch.stack(attention[:rows])
                del ids[:rows], attention[:rows]
                labels = masker(step_ids, 0, 0)
                yield {"input_ids": step_ids, "attention_mask": step_mask, "labels": labels}


def _permuted_piece_batches(cfg: Any, tokens: Any, masker: Any, loader_steps: bool):
    """One piece a row, all pieces of an epoch permuted; batch-size pieces a step, or (with
    `loader_steps`) as many pieces a step as the loader's batches of epoch 0 hold."""
    rows = cfg.global_train_batch_size
    stream = next(iter(cfg.train_loader.streams.values()))
    source = document_source(stream.local, stream.split or cfg.train_loader.split)
    seq = cfg.train_loader.max_seq_len
    counts = None
    if loader_steps:
        from ..data.flat import layout_of

        counts = [len(layout_of(b).seqlens) for b in _loader(cfg, tokens)]
    for epoch in range(1_000_000):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(num_pieces(source, seq))
        ids, mask = piece_rows(source, tokens, seq, order)
        sizes = counts if counts is not None else [rows] * (len(order) // rows)
        for lo, n in zip(np.cumsum([0, *sizes]).tolist(), sizes):
            if lo + n > len(order):
                break
            input_ids = torch.from_numpy(ids[lo : lo + n].copy())
            attention = torch.from_numpy(mask[lo : lo + n])
            labels = masker(input_ids, lo, epoch)
            yield {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _plain_masker(kind: str, tokenizer: Any, tokens: Any, loader_cfg: Any, seed: int):
    """`(input_ids [B, L], first row, epoch) -> labels`, masking `input_ids` in place."""
    if kind == "hf":
        from transformers import DataCollatorForLanguageModeling

        collator = DataCollatorForLanguageModeling(
            tokenizer, mlm=True, mlm_probability=loader_cfg.mlm_probability
        )

        def hf_mask(input_ids: torch.Tensor, first: int, epoch: int) -> torch.Tensor:
            masked, labels = collator.torch_mask_tokens(input_ids.clone())
            input_ids.copy_(masked)
            return labels

        return hf_mask
    from ..data.masking import MLMMasker

    masker = MLMMasker(
        tokens,
        loader_cfg.mlm_probability,
        loader_cfg.mask_replace_prob,
        loader_cfg.random_replace_prob,
    )

    def our_mask(input_ids: torch.Tensor, first: int, epoch: int) -> torch.Tensor:
        array = input_ids.numpy()  # shares memory: masked in place
        labels = [
            masker.mask_row(row, masker.row_rng(seed, epoch, first + r))
            for r, row in enumerate(array)
        ]
        return torch.from_numpy(np.stack(labels))

    return our_mask


@dataclass
class RunResult:
    """One trained run, scored."""

    label: str
    seed: int
    val_loss: float
    steps: int
    seconds: float
    train_losses: list[float]


def run_one(
    side: str,
    recipe: Path,
    seed: int,
    budget: Budget,
    workdir: Path,
    extra_overrides: list[str] = (),
    parts: PlainParts | None = None,
    label: str | None = None,
    shuffle_offset: int = 0,
) -> RunResult:
    """Train one side for one seed and score it on the shared validation rows."""
    from ..data.tokenizer import TokenSpec, load_tokenizer
    from ..train.config import load_recipe

    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    metrics = workdir / f"metrics-{seed}.jsonl"
    overrides = [*run_overrides(seed, budget, metrics, shuffle_offset), *extra_overrides]
    start = time.perf_counter()
    if side == "ours":
        model, losses = train_ours(recipe, overrides)
        name = label or "ours" + (f" ({' '.join(extra_overrides)})" if extra_overrides else "")
    elif side == "plain":
        parts = parts or PlainParts()
        model, losses = train_plain(recipe, overrides, budget, parts)
        name = label or parts.label()
    else:
        raise ValueError(f"side must be 'ours' or 'plain', got {side!r}")
    seconds = time.perf_counter() - start
    cfg = load_recipe(recipe, overrides)
    tokens = TokenSpec.from_tokenizer(load_tokenizer(cfg.tokenizer))
    stream = next(iter(cfg.train_loader.streams.values()))
    val = eval_batches(stream.local, tokens, cfg.train_loader.max_seq_len)
    loss = masked_lm_loss(logits_function(model), val)
    return RunResult(name, seed, loss, len(losses), seconds, losses)


def summary_table(results: list[RunResult]) -> str:
    """Markdown: per label, each seed's validation loss, their mean and its standard error
    (the data order alone moves one run by about 0.05 at the demo's budget, so a difference
    between two means is only a finding when it is well outside their standard errors)."""
    by_label: dict[str, list[RunResult]] = {}
    for r in results:
        by_label.setdefault(r.label, []).append(r)
    lines = [
        "| run | seeds | val MLM loss per seed | mean | ± s.e. | steps | s/run |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for label, runs in by_label.items():
        runs.sort(key=lambda r: r.seed)
        losses = [r.val_loss for r in runs]
        sem = f"{np.std(losses, ddof=1) / np.sqrt(len(losses)):.3f}" if len(losses) > 1 else "–"
        lines.append(
            f"| {label} | {', '.join(str(r.seed) for r in runs)} | "
            f"{', '.join(f'{v:.3f}' for v in losses)} | **{np.mean(losses):.3f}** | {sem} | "
            f"{runs[0].steps} | {np.mean([r.seconds for r in runs]):.0f} |"
        )
    return "\n".join(lines)
