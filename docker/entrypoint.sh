#!/usr/bin/env bash
# Container entry point.
#   <no args> | bash ...            -> that command (default: a shell)
#   recipe.yaml [key=value ...]     -> docker/launch.sh recipe.yaml ... (composer main.py)
#   composer main.py ... / python ... / any command -> run as given
set -euo pipefail
cd /workspace/modernbert

# W&B: online with WANDB_API_KEY, else offline (runs are kept under runs/ to sync later).
if [[ -z "${WANDB_API_KEY:-}" && -z "${WANDB_MODE:-}" ]]; then
    export WANDB_MODE=offline
fi

if [[ $# -gt 0 && "$1" == *.yaml ]]; then
    exec bash docker/launch.sh "$@"
fi
exec "$@"
