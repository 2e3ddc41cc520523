#!/usr/bin/env bash
# Launch fairseq-train as NPROC local ranks (one process each) with fairseq's own distributed flags.
# Everything after the script name is passed to every rank's fairseq-train (a --ddp-backend there is kept;
# without one the ranks get --ddp-backend legacy_ddp). Each rank logs to LOG_DIR/rankR.log. When a rank
# fails, or the script gets INT/TERM, the other ranks are stopped; the script then exits non-zero.
# Usage: NPROC=2 BACKEND=gloo bash scripts/launch_ranks.sh DATA_BIN --user-dir neuroprune_fairseq --task ... --cpu
# (BACKEND=nccl and no --cpu on GPUs; for several machines use fairseq's --distributed-init-method directly)
set -euo pipefail

NPROC=${NPROC:-2}
BACKEND=${BACKEND:-gloo}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29533}
LOG_DIR=${LOG_DIR:-runs/ranks}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-fairseq-train}

if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "error: NPROC must be a positive integer, got '$NPROC'" >&2; exit 1; }
((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501)) || { echo "error: launch_ranks.sh needs bash >= 5.1 (wait -n -p), this is $BASH_VERSION" >&2; exit 1; }
mkdir -p "$LOG_DIR"

DDP_BACKEND=(--ddp-backend legacy_ddp)
for arg in "$@"; do
    [[ "$arg" == --ddp-backend || "$arg" == --ddp-backend=* ]] && DDP_BACKEND=()
done

declare -A rank_of=()  # pid -> rank, for the ranks still running
stop_ranks() {
    ((${#rank_of[@]})) || return 0
    kill -TERM "${!rank_of[@]}" 2>/dev/null || true
    wait "${!rank_of[@]}" 2>/dev/null || true
}
trap 'echo "launch_ranks.sh: interrupted, stopping the ranks" >&2; stop_ranks; exit 130' INT
trap 'echo "launch_ranks.sh: terminated, stopping the ranks" >&2; stop_ranks; exit 143' TERM

for ((rank = 0; rank < NPROC; rank++)); do
    "$FAIRSEQ_TRAIN" "$@" --distributed-world-size "$NPROC" --distributed-rank "$rank" \
        --distributed-backend "$BACKEND" --distributed-init-method "tcp://$MASTER_ADDR:$MASTER_PORT" \
        --distributed-no-spawn "${DDP_BACKEND[@]}" > "$LOG_DIR/rank$rank.log" 2>&1 &
    rank_of[$!]=$rank
done
echo "launched $NPROC ranks (logs in $LOG_DIR/rank*.log)"

# A rank that fails leaves the others waiting for it forever (collectives): stop them at the first failure.
while ((${#rank_of[@]})); do
    finished= status=0
    wait -n -p finished "${!rank_of[@]}" || status=$?
    rank=${rank_of[$finished]}
    unset "rank_of[$finished]"
    ((status == 0)) && continue
    echo "error: rank $rank failed (exit status $status); stopping the other ranks. Last lines of $LOG_DIR/rank$rank.log:" >&2
    tail -n 20 "$LOG_DIR/rank$rank.log" >&2
    stop_ranks
    exit 1
done
