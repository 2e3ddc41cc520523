#!/usr/bin/env bash
# The paper's full-size MT setup for a GPU user: IWSLT14 De-En, the wide 108-head architecture
# (neuroprune_iwslt_de_en), 15 epochs of dense pretraining, then 15 epochs of each method from that
# checkpoint: NeuroPrune over an alpha x beta x theta grid (and at head budgets), DSP and Michel at
# K in BUDGETS, l1 over the alpha grid; every run evaluated into RUN_DIR/records. Resumable: a run with a
# record is skipped. Grids: the paper used alpha in {0.005 ... 0.5}, beta in {0.05, 0.1}, theta 0.1-0.4;
# on our per-token scale alpha above 1e-3 destroyed the model (see README "Calibration"), hence our defaults.
# Usage: IWSLT14_ARCHIVE=path/to/de-en.tgz bash examples/iwslt14_de_en/full_size.sh   (env overrides below)
set -euo pipefail

WORK_DIR=${WORK_DIR:-data/iwslt14}
DATA_BIN=${DATA_BIN:-$WORK_DIR/data-bin}
RUN_DIR=${RUN_DIR:-runs/iwslt14_full}
ARCH=${ARCH:-neuroprune_iwslt_de_en}
EPOCHS=${EPOCHS:-15}
ALPHAS=${ALPHAS:-"1e-4 3e-4 1e-3"}
BETAS=${BETAS:-"1e-3 1e-2"}
THETAS=${THETAS:-"0.2 0.25 0.3"}
BUDGETS=${BUDGETS:-"81 54 27"}
MAX_TOKENS=${MAX_TOKENS:-4096}
DEVICE_FLAGS=${DEVICE_FLAGS:---fp16}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,8p "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
export ARCH MAX_TOKENS DEVICE_FLAGS PYTHON DATA_BIN

[[ -f "$DATA_BIN/dict.de.txt" ]] || WORK_DIR="$WORK_DIR" DEST_DIR="$DATA_BIN" bash examples/iwslt14_de_en/prepare-iwslt14.sh
[[ -f "$RUN_DIR/dense/checkpoint_last.pt" ]] || \
    SAVE_DIR="$RUN_DIR/dense" MAX_EPOCH="$EPOCHS" bash examples/iwslt14_de_en/train_dense.sh
PRETRAINED="$RUN_DIR/dense/checkpoint_last.pt"

# finetune_and_evaluate NAME METHOD BUDGET [VAR=value ...]: one fine-tuning run and its record.
finetune_and_evaluate() {
    local name=$1 method=$2 budget=$3; shift 3
    local record="$RUN_DIR/records/$name.json"
    [[ -f "$record" ]] && { echo "skip $name (record exists)"; return; }
    echo "=== $name"
    env "$@" METHOD="$method" BUDGET="$budget" PRETRAINED="$PRETRAINED" SAVE_DIR="$RUN_DIR/$name" MAX_EPOCH="$EPOCHS" \
        bash examples/iwslt14_de_en/finetune.sh > "$RUN_DIR/$name.log" 2>&1
    local budget_arg=(); [[ -n "$budget" ]] && budget_arg=(--budget "$budget")
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$RUN_DIR/$name/checkpoint_last.pt" --data-bin "$DATA_BIN" \
        --name "$name" --method "$method" "${budget_arg[@]}" --out "$record"
}

mkdir -p "$RUN_DIR/records"
[[ -f "$RUN_DIR/records/dense.json" ]] || "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$PRETRAINED" \
    --data-bin "$DATA_BIN" --name dense --method dense --out "$RUN_DIR/records/dense.json"
for alpha in $ALPHAS; do
    for beta in $BETAS; do
        for theta in $THETAS; do
            finetune_and_evaluate "np_a${alpha}_b${beta}_t${theta}" neuroprune "" ALPHA="$alpha" BETA="$beta" THETA="$theta"
        done
        for budget in $BUDGETS; do
            finetune_and_evaluate "np_a${alpha}_b${beta}_k${budget}" neuroprune "$budget" ALPHA="$alpha" BETA="$beta"
        done
    done
    finetune_and_evaluate "l1_a${alpha}" l1 "" ALPHA="$alpha" BETA="$alpha"
done
for budget in $BUDGETS; do
    finetune_and_evaluate "dsp_k$budget" dsp "$budget"
    finetune_and_evaluate "michel_k$budget" michel "$budget"
done
"$PYTHON" -m neuroprune_fairseq.tools.plots bleu-vs-heads "$RUN_DIR"/records/*.json --out "$RUN_DIR/bleu-vs-heads.png" \
    --title "IWSLT14 De-En, wide 108-head transformer"
"$PYTHON" -m neuroprune_fairseq.tools.plots frontier "$RUN_DIR"/records/*.json --out "$RUN_DIR/frontier.png" \
    --title "IWSLT14 De-En, wide 108-head transformer"
