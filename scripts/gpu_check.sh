#!/usr/bin/env bash
# GPU checks for the model: the gpu-marked tests, then throughput per attention backend.
# Works on a box with only torch + transformers + pytest: the package is used from src/.
#   bash scripts/gpu_check.sh [time_model.py options]     (default: base dims, seq 1024, --vs-hf)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py
tests_status=$?
if [ $# -eq 0 ]; then set -- --vs-hf; fi
"$PY" scripts/time_model.py "$@"
timing_status=$?
exit $(( tests_status != 0 ? tests_status : timing_status ))
