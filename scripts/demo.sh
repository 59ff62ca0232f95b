#!/usr/bin/env bash
# The CPU demo, end to end (`make demo`):
#   1. build the built-in corpus's tokenizer and MDS shards with data_prep/ (skipped if present)
#   2. train the three demo phases: pretrain (seq 128) -> context extension (seq 512) -> decay
#   3. export the last checkpoint to a Hugging Face folder
#   4. print first/last losses per phase and fill-mask predictions from stock transformers
#   5. a downstream number: fine-tune the exported model on code-vs-prose snippets of the
#      same corpus (python -m modernbert.eval, the GLUE code path) and print the table
# Everything goes to demo_out/ (`make clean-demo` removes it). A rerun resumes or skips
# finished phases (autoresume).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=demo_out
export TOKENIZERS_PARALLELISM=false WANDB_MODE=${WANDB_MODE:-offline}
start=$(date +%s)

if [ ! -f "$OUT/tokenizer/tokenizer.json" ]; then
  echo "== tokenizer (byte-level BPE, 4096 tokens) on the local corpus"
  "$PY" data_prep/train_tokenizer.py --source local --vocab-size 4096 --output "$OUT/tokenizer"
else
  echo "== tokenizer: $OUT/tokenizer exists, skipped"
fi
if [ ! -f "$OUT/mds/summary.json" ]; then
  echo "== MDS shards of the local corpus"
  "$PY" data_prep/convert_to_mds.py --source local --tokenizer "$OUT/tokenizer" \
    --output "$OUT/mds" --workers 2 --no-progress
else
  echo "== MDS shards: $OUT/mds exists, skipped"
fi

for phase in pretrain context_extension decay; do
  echo "== training phase: yamls/demo/$phase.yaml"
  t0=$(date +%s)
  "$PY" main.py "yamls/demo/$phase.yaml"
  echo "$phase $(( $(date +%s) - t0 ))" >> "$OUT/phase_seconds.txt"
done

echo "== export to Hugging Face format"
"$PY" scripts/export_hf.py --checkpoint "$OUT/runs/demo-decay/checkpoints" --output "$OUT/hf" --overwrite

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

from transformers import pipeline

out = Path(sys.argv[1])
seconds = {}
for line in (out / "phase_seconds.txt").read_text().split("\n"):
    if line.strip():
        name, secs = line.split()
        seconds[name] = secs  # the last run of each phase
print("\n== losses per phase (training loss: mean of the first / last 5 steps; eval at the end)")
for run, phase in (("demo-pretrain", "pretrain"), ("demo-context-extension", "context_extension"),
                   ("demo-decay", "decay")):
    rows = [json.loads(l) for l in (out / "runs" / run / "metrics.jsonl").read_text().splitlines()]
    loss = {r["step"]: r["loss/train/total"] for r in rows if "loss/train/total" in r}
    evals = [r["metrics/eval/MaskedCrossEntropy"] for r in rows if "metrics/eval/MaskedCrossEntropy" in r]
    acc = [r["metrics/eval/MaskedAccuracy"] for r in rows if "metrics/eval/MaskedAccuracy" in r]
    steps = sorted(loss)
    first = sum(loss[s] for s in steps[:5]) / len(steps[:5])
    last = sum(loss[s] for s in steps[-5:]) / len(steps[-5:])
    print(f"{run:24s} steps {len(steps):4d}  loss {first:.3f} -> {last:.3f}"
          f"  eval loss {evals[-1]:.3f}  eval acc {acc[-1]:.3f}  ({seconds.get(phase, '?')} s)")

fill = pipeline("fill-mask", model=str(out / "hf"), device="cpu")
print("\n== fill-mask with transformers' pipeline on the exported model")
for text in [
    "import numpy as [MASK]",
    "def __init__([MASK], name):",
    "for i in [MASK](10):",
    "return [MASK]",
    "The function returns a [MASK] of strings.",
    "Raises a ValueError if the [MASK] is not found.",
]:
    top = fill(text, top_k=3)
    print(f"{text!r:52s} -> " + ", ".join(f"{p['token_str'].strip()!r} {p['score']:.2f}" for p in top))
PY
echo
echo "== downstream: fine-tune the exported model to tell code from prose (3 seeds)"
t0=$(date +%s)
if [ ! -f "$OUT/eval_data/code_prose/dataset_dict.json" ]; then
  "$PY" -m modernbert.eval make-code-prose --output "$OUT/eval_data"
fi
"$PY" -m modernbert.eval glue --model "$OUT/hf" --tasks code_prose --data "$OUT/eval_data" \
  --seeds 3 --output "$OUT/eval" --no-progress
echo "downstream eval $(( $(date +%s) - t0 )) s"
echo "== demo finished in $(( $(date +%s) - start )) s"
