#!/usr/bin/env bash
# The main command: on a fresh machine, set up the environment, build the offline German-English corpus
# from Debian packages, pretrain the narrow 108-head transformer, then fine-tune it side by side, for the same
# updates and seed, with NeuroPrune+ to NP_BUDGET heads (one elimination pass at the end of the first epoch, then
# the pruned model trains on) and as a dense control (plain label-smoothed cross entropy). Evaluate the starting
# dense model, the control and the pruned model on the whole test split, compare each with the control (sacrebleu's
# paired bootstrap) and write records, hypotheses, a results JSON, a PNG plot and a table to RUN_DIR.
# SPARSE_ALPHA and SPARSE_BETA (both or neither) add a third fine-tuning, NeuroPrune+ at that strength, as a fourth
# row. FROM_STEP=5 starts at the fine-tuning (the dense model must exist). Re-running resumes/reuses finished steps.
# Usage: bash scripts/run_offline_demo.sh        (env overrides below; -h for this text)
set -euo pipefail

RUN_DIR=${RUN_DIR:-runs/offline_demo}
SOURCES=${SOURCES:-libreoffice}
CORPUS_DIR=${CORPUS_DIR:-data/offline_de_en_${SOURCES//,/_}}
MAX_PIECES=${MAX_PIECES:-40}
DATA_BIN=${DATA_BIN:-$CORPUS_DIR/data-bin$MAX_PIECES}
DENSE_UPDATES=${DENSE_UPDATES:-972}  # four epochs of the 243-update corpus, chosen to fit 25 minutes on 2 CPU cores before the control was added
NP_METHOD=${NP_METHOD:-neuroprune_plus}  # neuroprune_plus: the pass chosen on valid (examples README); neuroprune: the paper's
NP_BUDGET=${NP_BUDGET:-54}  # heads kept, exactly, by the pass at the end of the first fine-tuning epoch
NP_EPOCHS=${NP_EPOCHS:-2}   # fine-tuning epochs of every fine-tuned model: the pruned one trains with its heads fixed after the first
ALPHA=${ALPHA:-1e-5}  # the strength chosen on valid for NeuroPrune+ (examples/iwslt14_de_en/results/seed_study/choices/)
BETA=${BETA:-1e-4}
SPARSE_ALPHA=${SPARSE_ALPHA:-}  # set with SPARSE_BETA: a fourth row, NeuroPrune+ to NP_BUDGET heads at this strength
SPARSE_BETA=${SPARSE_BETA:-}
SEED=${SEED:-1}  # the seed of every fine-tuning
ZERO_BELOW=${ZERO_BELOW:-1e-4}  # evaluation: weights with |w| below this are set to exactly zero in the evaluated model
BEAM=${BEAM:-5}
FROM_STEP=${FROM_STEP:-1}  # 5: skip environment, corpus and dense pretraining
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
(( NP_EPOCHS >= 2 )) || die "run_offline_demo.sh: NP_EPOCHS=$NP_EPOCHS: expected >= 2 (the pruned model trains after its pass)"
[[ -z "$SPARSE_ALPHA" && -z "$SPARSE_BETA" || -n "$SPARSE_ALPHA" && -n "$SPARSE_BETA" ]] ||
    die "run_offline_demo.sh: SPARSE_ALPHA='$SPARSE_ALPHA' SPARSE_BETA='$SPARSE_BETA': set both (a fourth row) or neither"
[[ "$FROM_STEP" =~ ^[1-5]$ ]] || die "run_offline_demo.sh: FROM_STEP=$FROM_STEP: expected 1 to 5"
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
from_step() { (( FROM_STEP <= $1 )); }

DENSE="$RUN_DIR/dense/checkpoint_last.pt"
if from_step 1; then
    step "1/6 environment"
    bash scripts/setup_env.sh
fi
if from_step 2; then
    step "2/6 offline corpus ($SOURCES) -> $CORPUS_DIR"
    if [[ -f "$CORPUS_DIR/corpus_stats.json" ]]; then echo "reusing $CORPUS_DIR"; else OUT_DIR="$CORPUS_DIR" SOURCES="$SOURCES" bash scripts/build_offline_corpus.sh; fi
fi
if from_step 3; then
    step "3/6 sentencepiece + fairseq-preprocess -> $DATA_BIN (train pairs <= $MAX_PIECES pieces per side)"
    if [[ -f "$DATA_BIN/dict.de.txt" ]]; then echo "reusing $DATA_BIN"; else
        DATA_DIR="$CORPUS_DIR" SPM_DIR="$CORPUS_DIR/spm$MAX_PIECES" DEST_DIR="$DATA_BIN" MAX_PIECES="$MAX_PIECES" bash scripts/binarize.sh
    fi
fi
if from_step 4; then
    step "4/6 dense pretraining ($DENSE_UPDATES updates, neuroprune_iwslt_de_en_narrow)"
    DATA_BIN="$DATA_BIN" SAVE_DIR="$RUN_DIR/dense" MAX_EPOCH=1000 MAX_UPDATE="$DENSE_UPDATES" \
        bash examples/iwslt14_de_en/train_dense.sh
fi
[[ -f "$DENSE" ]] || die "run_offline_demo.sh: the dense model $DENSE does not exist: run the steps before 5 (FROM_STEP=1)"

MODELS=(control neuroprune)  # fine-tuned from the dense model, side by side; the control first
if [[ -n "$SPARSE_ALPHA" ]]; then MODELS+=(sparse); fi
declare -A METHOD_OF=([dense]=dense [control]=dense [neuroprune]=$NP_METHOD [sparse]=$NP_METHOD) JOB_OF=()
ONE_THREAD_RUN=(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 DATA_BIN="$DATA_BIN" PRETRAINED="$DENSE" MAX_EPOCH="$NP_EPOCHS" SEED="$SEED")
PRUNE=(METHOD="$NP_METHOD" BUDGET="$NP_BUDGET" BUDGET_PASSES=1 PRUNE_START_EPOCH=1)
launch() {  # launch NAME VAR=VALUE...: finetune.sh into RUN_DIR/NAME as a background one-thread job (JOB_OF[NAME]: its pid)
    local name=$1; shift
    env "${ONE_THREAD_RUN[@]}" SAVE_DIR="$RUN_DIR/$name" "$@" bash examples/iwslt14_de_en/finetune.sh > "$RUN_DIR/logs/$name.log" 2>&1 &
    JOB_OF[$name]=$!
}
stop_jobs() {  # finetune.sh and the fairseq-train it started, of every job
    local pid
    for pid in "${JOB_OF[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
}
trap 'echo "run_offline_demo.sh: interrupted, stopping the fine-tunings" >&2; stop_jobs; exit 130' INT TERM

step "5/6 fine-tuning side by side, one thread each, $NP_EPOCHS epochs, seed $SEED: ${MODELS[*]} (control: dense;" \
    "neuroprune: $NP_METHOD to $NP_BUDGET heads, the pass after the first epoch, alpha=$ALPHA beta=$BETA${SPARSE_ALPHA:+;" \
    "sparse: the same at alpha=$SPARSE_ALPHA beta=$SPARSE_BETA})"
mkdir -p "$RUN_DIR/logs"
launch control METHOD=dense
launch neuroprune "${PRUNE[@]}" ALPHA="$ALPHA" BETA="$BETA"
if [[ -n "$SPARSE_ALPHA" ]]; then launch sparse "${PRUNE[@]}" ALPHA="$SPARSE_ALPHA" BETA="$SPARSE_BETA"; fi
FAILED=()
for name in "${MODELS[@]}"; do wait "${JOB_OF[$name]}" || FAILED+=("$name"); done
trap - INT TERM
for name in "${MODELS[@]}"; do  # each run's passes and epochs
    grep -E "neuroprune \| epoch|\| (train|valid) \| epoch" "$RUN_DIR/logs/$name.log" | sed "s/^/[$name] /" || true
done
for name in "${FAILED[@]}"; do
    echo "run_offline_demo.sh: fine-tuning $name failed; last lines of $RUN_DIR/logs/$name.log:" >&2
    tail -n 20 "$RUN_DIR/logs/$name.log" >&2
done
(( ${#FAILED[@]} == 0 )) || die "run_offline_demo.sh: fine-tuning failed: ${FAILED[*]} (logs in $RUN_DIR/logs/)"

step "6/6 evaluation (beam $BEAM, |w| < $ZERO_BELOW zeroed; the whole test split and its pairs of <= $MAX_PIECES pieces)," \
    "paired bootstrap against the control, summary"
RECORDS=$RUN_DIR/records
for name in dense "${MODELS[@]}"; do
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$RUN_DIR/$name/checkpoint_last.pt" --data-bin "$DATA_BIN" \
        --out "$RECORDS/$name.json" --overwrite --name "$name" --method "${METHOD_OF[$name]}" --beam "$BEAM" \
        --zero-below "$ZERO_BELOW" --score-unthresholded --max-pieces "$MAX_PIECES" --text-out "$RECORDS/$name" --cpu
    if [[ "$name" != dense ]]; then  # the references once: every model translated the same split
        cmp -s "$RECORDS/$name.ref" "$RECORDS/dense.ref" || die "run_offline_demo.sh: $RECORDS/$name.ref differs from $RECORDS/dense.ref"
        rm "$RECORDS/$name.ref"
    fi
done
SYSTEMS=() ROWS=()
for name in control dense "${MODELS[@]:1}"; do SYSTEMS+=(--system "$name=$RECORDS/$name.hyp"); done  # the control: baseline
for name in dense "${MODELS[@]}"; do ROWS+=("$RECORDS/$name.json"); done
"$PYTHON" -m neuroprune.tools.significance --refs "$RECORDS/dense.ref" "${SYSTEMS[@]}" --out "$RUN_DIR/significance.json" --overwrite
"$PYTHON" -m neuroprune.tools.summarize "${ROWS[@]}" --control control --significance "$RUN_DIR/significance.json" \
    --out-json "$RUN_DIR/results.json" --out-png "$RUN_DIR/results.png"
echo
echo "wrote $RUN_DIR/results.json, $RUN_DIR/results.png, $RUN_DIR/significance.json (paired bootstrap against the control)," \
    "records and hypotheses in $RECORDS in $(( $(date +%s) - START ))s"
