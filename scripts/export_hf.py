"""Export a Composer checkpoint (any phase) to a Hugging Face folder.

    python scripts/export_hf.py --checkpoint runs/demo-decay/checkpoints --output demo_out/hf
    python scripts/export_hf.py --checkpoint ckpt/ep0-ba100-rank0.pt --output hf/ --tokenizer tok/

--checkpoint takes a .pt file, an FSDP sharded checkpoint folder, or a save folder (its
latest checkpoint). The folder then loads with stock transformers
(`AutoModelForMaskedLM.from_pretrained`, `pipeline("fill-mask")`).
"""

from __future__ import annotations

import argparse
import sys

from modernbert.errors import UserError
from modernbert.safe_output import check_output_folder
from modernbert.train.checkpoint_export import export_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help=".pt file, sharded folder or save folder"
    )
    parser.add_argument("--output", required=True, help="folder to write the HF model into")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer folder or hub name (default: the run's)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in --output"
    )
    args = parser.parse_args(argv)
    check_output_folder(args.output, "Hugging Face model", args.overwrite, [args.checkpoint])
    folder = export_checkpoint(args.checkpoint, args.output, args.tokenizer)
    print(f"exported {args.checkpoint} -> {folder}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, FileExistsError, ValueError, UserError) as err:
        sys.exit(f"error: {err}")
