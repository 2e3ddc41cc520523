#!/usr/bin/env bash
# Launch fairseq-train as NPROC local ranks (one process each) with fairseq's own distributed flags.
# Everything after the script name is passed to every rank's fairseq-train. Each rank logs to
# LOG_DIR/rankR.log; the script exits non-zero if any rank fails.
# Usage: NPROC=2 BACKEND=gloo bash scripts/launch_ranks.sh DATA_BIN --user-dir neuroprune_fairseq --task ... --cpu
# (BACKEND=nccl and no --cpu on GPUs; for several machines use fairseq's --distributed-init-method directly)
set -euo pipefail

NPROC=${NPROC:-2}
BACKEND=${BACKEND:-gloo}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29533}
LOG_DIR=${LOG_DIR:-runs/ranks}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}

if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then sed -n 2,7p "$0"; exit 0; fi
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "error: NPROC must be a positive integer, got '$NPROC'" >&2; exit 1; }
mkdir -p "$LOG_DIR"

pids=()
for ((rank = 0; rank < NPROC; rank++)); do
    "$FAIRSEQ_TRAIN" "$@" --distributed-world-size "$NPROC" --distributed-rank "$rank" \
        --distributed-backend "$BACKEND" --distributed-init-method "tcp://$MASTER_ADDR:$MASTER_PORT" \
        --distributed-no-spawn --ddp-backend legacy_ddp > "$LOG_DIR/rank$rank.log" 2>&1 &
    pids+=($!)
done
echo "launched $NPROC ranks (logs in $LOG_DIR/rank*.log)"

failed=0
for rank in "${!pids[@]}"; do
    if ! wait "${pids[$rank]}"; then
        echo "error: rank $rank failed; last lines of $LOG_DIR/rank$rank.log:" >&2
        tail -n 20 "$LOG_DIR/rank$rank.log" >&2
        failed=1
    fi
done
exit "$failed"
