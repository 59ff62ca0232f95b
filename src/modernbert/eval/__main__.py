"""Command line: `python -m modernbert.eval glue ...` and `... make-code-prose ...`.

python -m modernbert.eval glue --model hf_model --tasks mnli,sst2,rte --seeds 3
python -m modernbert.eval glue --model hf_model --tasks cola --data glue_saved/ --lrs 5e-5
python -m modernbert.eval make-code-prose --output eval_data/
python -m modernbert.eval glue --model demo_out/hf --tasks code_prose --data eval_data/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modernbert.eval.tasks import TASKS


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modernbert.eval", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    glue = sub.add_parser("glue", help="fine-tune and evaluate on GLUE tasks (or local ones)")
    glue.add_argument("--model", type=Path, required=True, help="Hugging Face ModernBERT folder")
    glue.add_argument(
        "--tasks",
        default="mnli,sst2,qnli,qqp,cola,rte,mrpc,stsb",
        help=f"comma-separated, from: {', '.join(TASKS)}",
    )
    glue.add_argument("--seeds", type=int, default=3, help="seeds per setting (0..N-1)")
    glue.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with one datasets.save_to_disk folder per task "
        "(default: datasets.load_dataset('glue', task), needs a network)",
    )
    glue.add_argument("--output", type=Path, default=Path("eval_out"))
    glue.add_argument("--lrs", type=_floats, default=None, help="override the tasks' LR grid")
    glue.add_argument("--epochs", type=int, default=None, help="override the tasks' epochs")
    glue.add_argument("--batch-size", type=int, default=None, help="override the tasks' batch size")
    glue.add_argument("--max-seq-len", type=int, default=None)
    glue.add_argument(
        "--no-mnli-start",
        action="store_true",
        help="RTE/MRPC/STS-B start from the model, not from MNLI",
    )
    glue.add_argument("--wandb-project", default=None, help="also log to this W&B project")
    glue.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    glue.add_argument("--no-progress", action="store_true")
    local = sub.add_parser("make-code-prose", help="build the offline code-vs-prose task")
    local.add_argument("--output", type=Path, required=True, help="writes OUTPUT/code_prose")
    local.add_argument("--per-class", type=int, default=None)
    local.add_argument("--seed", type=int, default=0)
    return p


def _glue(args: argparse.Namespace) -> int:
    from modernbert.eval.runner import DEFAULT_MAX_SEQ_LEN, EvalOptions, run_eval
    from modernbert.eval.tasks import get_tasks

    for name in ("seeds", "epochs", "batch_size", "max_seq_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.lrs is not None and (not args.lrs or min(args.lrs) <= 0):
        raise ValueError(f"--lrs must be positive numbers, got {args.lrs}")
    opts = EvalOptions(
        model=args.model,
        tasks=get_tasks(args.tasks),
        seeds=list(range(args.seeds)),
        output=args.output,
        data_dir=args.data,
        lrs=args.lrs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len or DEFAULT_MAX_SEQ_LEN,
        from_mnli=not args.no_mnli_start,
        wandb_project=args.wandb_project,
        progress=not args.no_progress,
        device=args.device,
    )
    from modernbert.eval.report import markdown_table

    report = run_eval(opts)
    print(markdown_table(report), end="")
    print(f"results: {args.output / 'results.json'}, {args.output / 'results.md'}")
    return 0


def _make_code_prose(args: argparse.Namespace) -> int:
    from modernbert.eval.local import DEFAULT_PER_CLASS, build_code_prose

    folder = build_code_prose(
        args.output, per_class=args.per_class or DEFAULT_PER_CLASS, seed=args.seed
    )
    print(f"code_prose task written to {folder}")
    return 0


COMMANDS = {"glue": _glue, "make-code-prose": _make_code_prose}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "no_progress", True):  # datasets' map/save bars too (make-code-prose)
        import datasets

        datasets.disable_progress_bars()
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # bad input: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
