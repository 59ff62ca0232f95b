#!/usr/bin/env bash
# Every GPU check of the training fast path in one prepared run (<= 8 minutes on one H100/H200),
# for a lent GPU box with only torch + transformers + pytest and no network:
#   1. a corpus (demo_out/ if present, else tokenizer + MDS shards of the box's own packages)
#   2. >= 150 steps of yamls/pretrain_base.yaml on one GPU (no FSDP on one rank), compiled
#      regions, 72 x 1024 rows: tokens/s, MFU and peak memory over the last 50-step window
#   3. the profiler's top kernels of the same recipe's bare training steps
#   4. the gpu-base benchmark, ours vs transformers: 1024 and 8192, fixed and variable
#      lengths, train and inference, plus the loss head's peak memory (plain vs chunked)
#   5. the gpu-marked tests
#   bash tools/gpu_session/gpu_suite.sh     (figures and logs go to $OUT, default gpu_out/)
# Pure-Python wheels of the rest of the stack (Composer, streaming, ...) travel in .whl/ and are
# installed with --no-deps first (see tools/gpu_session/README.md). Each stage has its own time
# limit and writes its figures as it goes, so a slow stage cannot starve the others and a
# cut-short one still leaves what it measured.
set -uo pipefail
cd "$(dirname "$0")/../.."  # the repository root
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || echo "wheel install failed (see pip.log)"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
  | tee -a "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, record status
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit took=$((SECONDS - t0))s" | tee -a "$OUT/status.txt"
  tail -n "${TAIL:-15}" "$OUT/$name.log"
}

# 1. corpus: the demo's if it was built (make demo), else the box's own packages (~16 MB of text)
CORPUS=${CORPUS:-demo_out}
if [ ! -f "$CORPUS/mds/summary.json" ]; then
  CORPUS=/tmp/mb_corpus
  step corpus "${CORPUS_LIMIT:-45}" bash -c "
    python3 data_prep/train_tokenizer.py --source local --vocab-size 4096 --output $CORPUS/tokenizer &&
    python3 data_prep/convert_to_mds.py --source local --tokenizer $CORPUS/tokenizer \
      --output $CORPUS/mds --workers 8 --no-progress"
fi

# 2. the base recipe on one GPU: the corpus's tokenizer and special ids, no eval, no saving
TRAIN_STEPS=${TRAIN_STEPS:-150}
WINDOW=${WINDOW:-50}
ROWS=${ROWS:-72}  # the recipe's microbatch: one microbatch per step
BASE=(yamls/pretrain_base.yaml tokenizer="$CORPUS/tokenizer" model.pad_token_id=0
  model.cls_token_id=2 model.sep_token_id=3 model.mask_token_id=4
  train_loader.streams.pretrain.local="$CORPUS/mds" train_loader.num_workers=8 eval_loader=null
  global_train_batch_size="$ROWS" device_train_microbatch_size="$ROWS" batch_size_warmup=null
  compile=true loggers.wandb=null save_folder=null autoresume=false)
step train_base "${TRAIN_LIMIT:-170}" python3 main.py "${BASE[@]}" max_duration="${TRAIN_STEPS}ba" \
  metrics_file="$OUT/train_metrics.jsonl" callbacks.speed_monitor.window_size="$WINDOW" \
  callbacks.grad_norm.interval="$WINDOW" loggers.console.interval=10ba
python3 scripts/bench.py train-run summarize "$OUT/train_metrics.jsonl" --window "$WINDOW" \
  --json "$OUT/train_summary.json" 2>&1 | tee -a "$OUT/status.txt"

# 3. top kernels of the same recipe's steps (compiled regions; 3 warm-up steps, 2 profiled)
step profile_train "${PROFILE_LIMIT:-60}" python3 scripts/bench.py train-run profile \
  --out "$OUT/profiles" "${BASE[@]}"
head -n 30 "$OUT/profiles/train_step_top_ops.txt" 2>/dev/null

# 4. the GPU tests (backends against the CPU reference, no sync in a CUDA step, compiled
#    regions without recompiles, one GPU trains unwrapped, ...)
step gpu_tests "${TESTS_LIMIT:-90}" python3 -m pytest -q -m gpu -p no:cacheprovider tests

# 5. ours vs transformers (figures written after every scenario)
step benchmark "${BENCH_LIMIT:-100}" python3 scripts/bench.py speed --preset gpu-base \
  --seq-lens 1024 8192 --backends auto --warmup 1 --repeats 2 --steps 2 \
  --json "$OUT/bench_gpu.json"
cat "$OUT/status.txt"
