#!/usr/bin/env bash
# Launch `composer main.py RECIPE [key=value ...]` on this node, single- or multi-node.
#
#   GPUS_PER_NODE  processes on this node     (default: GPUs visible here, at least 1)
#   NNODES         nodes in the job           (default: $SLURM_NNODES or 1)
#   NODE_RANK      this node's index, 0-based (default: $SLURM_NODEID or 0)
#   MASTER_ADDR    address of node 0          (default: 127.0.0.1; required when NNODES > 1)
#   MASTER_PORT    a free TCP port on node 0  (default: 29500)
#
# Every node runs the same command with its own NODE_RANK; node 0 hosts the rendezvous.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 ]]; then
    echo "usage: $0 RECIPE.yaml [key=value ...]" >&2
    exit 2
fi
if [[ ! -f "$1" ]]; then
    echo "launch.sh: recipe file not found: $1" >&2
    exit 2
fi

gpus_here() {
    python -c "import torch; print(max(1, torch.cuda.device_count()))"
}
GPUS_PER_NODE="${GPUS_PER_NODE:-$(gpus_here)}"
NNODES="${NNODES:-${SLURM_NNODES:-1}}"
NODE_RANK="${NODE_RANK:-${SLURM_NODEID:-0}}"
MASTER_PORT="${MASTER_PORT:-29500}"
if [[ "$NNODES" -gt 1 && -z "${MASTER_ADDR:-}" ]]; then
    echo "launch.sh: NNODES=$NNODES needs MASTER_ADDR (the address of node 0)" >&2
    exit 2
fi
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
if [[ "$NODE_RANK" -ge "$NNODES" ]]; then
    echo "launch.sh: NODE_RANK=$NODE_RANK must be below NNODES=$NNODES" >&2
    exit 2
fi
WORLD_SIZE=$((GPUS_PER_NODE * NNODES))

echo "launch.sh: node $NODE_RANK/$NNODES, $GPUS_PER_NODE processes here, world size" \
    "$WORLD_SIZE, rendezvous $MASTER_ADDR:$MASTER_PORT" >&2
exec composer \
    -n "$GPUS_PER_NODE" \
    --world_size "$WORLD_SIZE" \
    --node_rank "$NODE_RANK" \
    --base_rank $((NODE_RANK * GPUS_PER_NODE)) \
    --master_addr "$MASTER_ADDR" \
    --master_port "$MASTER_PORT" \
    main.py "$@"
