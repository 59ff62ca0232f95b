#!/usr/bin/env bash
# Every GPU check in one prepared run, for a lent GPU box with only torch + transformers +
# pytest (no network): the gpu-marked tests, the benchmark against transformers at ModernBERT-
# base size, and a short FSDP training run of the base recipe on the demo corpus.
#   bash scripts/gpu_suite.sh                 (figures and logs go to $OUT, default gpu_out/)
# Pure-Python wheels of the rest of the stack (Composer, streaming, ...) travel in .whl/ and are
# installed with --no-deps first (see README, "GPU checks"). Each step has its own time limit
# so one slow step cannot starve the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1 || echo "wheel install failed (see pip.log)"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, record status
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc ${limit}s-limit took=$((SECONDS - t0))s" | tee -a "$OUT/status.txt"
  tail -n "${TAIL:-25}" "$OUT/$name.log"
}

step benchmark "${BENCH_LIMIT:-300}" python3 scripts/benchmark.py --preset gpu-base \
  --seq-lens 1024 8192 --backends auto --json "$OUT/bench_gpu.json" --profile "$OUT/profiles"
step gpu_tests "${TESTS_LIMIT:-150}" python3 -m pytest -q -m gpu -p no:cacheprovider tests
step fsdp_base "${FSDP_LIMIT:-90}" python3 main.py yamls/pretrain_base.yaml \
  tokenizer=demo_out/tokenizer model.pad_token_id=0 model.cls_token_id=2 model.sep_token_id=3 \
  model.mask_token_id=4 train_loader.streams.pretrain.local=demo_out/mds \
  train_loader.num_workers=4 eval_loader=null global_train_batch_size=64 \
  device_train_microbatch_size=32 batch_size_warmup=null max_duration=25ba \
  parallelism.strategy=fsdp loggers.wandb=null save_folder=null autoresume=false \
  metrics_file="$OUT/fsdp_metrics.jsonl" callbacks.speed_monitor.window_size=10 \
  loggers.console.interval=5ba
cat "$OUT/status.txt"
