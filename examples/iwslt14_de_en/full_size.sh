#!/usr/bin/env bash
# The paper's full-size MT setup for a GPU user: IWSLT14 De-En (prepare-iwslt14.sh), the wide 108-head
# architecture (neuroprune_iwslt_de_en), EPOCHS of dense pretraining (fairseq's IWSLT recipe: lr 5e-4,
# inverse_sqrt, warmup 4000, dropout 0.3), then study.sh from that checkpoint with EPOCHS of each method:
# NeuroPrune at every alpha x beta over the THETAS and at the head BUDGETS, l1 at the same alpha x beta,
# DSP and Michel at the BUDGETS; every run evaluated, exported, benchmarked, tabled and plotted in
# RESULTS_DIR. Resumable (finished steps are skipped). The paper: alpha in {0.005 ... 0.5}, beta in
# {0.05, 0.1}, theta 0.1-0.4; on our per-token scale alpha above 1e-3 destroyed the model (README "Calibration").
# Extra arguments go to every fairseq-train (pretraining and fine-tuning), e.g. to change the model size.
# Usage: IWSLT14_ARCHIVE=path/to/de-en.tgz bash examples/iwslt14_de_en/full_size.sh [extra fairseq-train args]
set -euo pipefail

WORK_DIR=${WORK_DIR:-data/iwslt14}
DATA_BIN=${DATA_BIN:-$WORK_DIR/data-bin}
RUN_DIR=${RUN_DIR:-runs/iwslt14_full}
RESULTS_DIR=${RESULTS_DIR:-$RUN_DIR/results}
ARCH=${ARCH:-neuroprune_iwslt_de_en}
EPOCHS=${EPOCHS:-15}
ALPHAS=${ALPHAS:-"1e-4 3e-4 1e-3"}
BETAS=${BETAS:-"1e-3 1e-2"}
THETAS=${THETAS-"0.2 0.25 0.3"}  # empty: no fixed-theta runs
BUDGETS=${BUDGETS-"81 54 27"}  # empty: no budget runs (and no DSP or Michel)
DENSE_LR=${DENSE_LR:-5e-4}
WARMUP=${WARMUP:-4000}
FINETUNE_LR=${FINETUNE_LR:-2.5e-4}  # about where the dense inverse_sqrt schedule ends (~16k updates)
DROPOUT=${DROPOUT:-0.3}
MAX_TOKENS=${MAX_TOKENS:-4096}
DEVICE_FLAGS=${DEVICE_FLAGS:---fp16}
DSP_ANNEAL_UPDATES=${DSP_ANNEAL_UPDATES:-4000}  # gate temperature annealed over the first ~quarter of fine-tuning
PHASES=${PHASES:-"train evaluate export bench summary"}  # study.sh's phases after the pretraining
PYTHON=${PYTHON:-.venv/bin/python}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-.venv/bin/fairseq-train}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,10p "$0"; exit 0; fi
cd "$(dirname "$0")/../.."
die() { echo "full_size.sh: $*" >&2; exit 1; }
for list in ALPHAS BETAS; do [[ -n "${!list// /}" ]] || die "$list is empty: give at least one value"; done

[[ -f "$DATA_BIN/dict.de.txt" ]] || WORK_DIR="$WORK_DIR" DEST_DIR="$DATA_BIN" PYTHON="$PYTHON" \
    bash examples/iwslt14_de_en/prepare-iwslt14.sh
if [[ ! -f "$RUN_DIR/dense/done" ]]; then  # a launch cut short resumes from the dense checkpoint_last.pt
    mkdir -p "$RUN_DIR/dense"
    echo "=== dense pretraining, $EPOCHS epochs -> $RUN_DIR/dense (log: $RUN_DIR/dense/train.log)"
    DATA_BIN="$DATA_BIN" SAVE_DIR="$RUN_DIR/dense" ARCH="$ARCH" MAX_EPOCH="$EPOCHS" LR="$DENSE_LR" WARMUP="$WARMUP" \
        DROPOUT="$DROPOUT" MAX_TOKENS="$MAX_TOKENS" DEVICE_FLAGS="$DEVICE_FLAGS" FAIRSEQ_TRAIN="$FAIRSEQ_TRAIN" \
        bash examples/iwslt14_de_en/train_dense.sh "$@" > "$RUN_DIR/dense/train.log" 2>&1 \
        || { tail -20 "$RUN_DIR/dense/train.log" >&2; die "dense pretraining failed (log: $RUN_DIR/dense/train.log)"; }
    touch "$RUN_DIR/dense/done"
fi

strengths=""
for alpha in $ALPHAS; do for beta in $BETAS; do strengths+=" a${alpha}_b${beta}:$alpha:$beta"; done; done
mid=$(echo "$BUDGETS" | awk '{print $(int((NF + 1) / 2))}')  # the middle budget, for the FFN degree plot
last() { echo "$1" | awk '{print $NF}'; }
shown="a$(last "$ALPHAS")_b$(last "$BETAS")"  # the last alpha and beta, for the head map and degree plots
head_map=""; for budget in $BUDGETS; do head_map+=" np_k${budget}_$shown dsp_k$budget michel_k$budget"; done

STUDY_DIR="$RUN_DIR" RESULTS_DIR="$RESULTS_DIR" DATA_BIN="$DATA_BIN" PRETRAINED="$RUN_DIR/dense/checkpoint_last.pt" \
    EPOCHS="$EPOCHS" STRENGTHS="$strengths" NP_BUDGETS="$BUDGETS" THETAS="$THETAS" DSP_BUDGETS="$BUDGETS" \
    MICHEL_BUDGETS="$BUDGETS" DSP_ANNEAL_UPDATES="$DSP_ANNEAL_UPDATES" ARCH="$ARCH" LR="$FINETUNE_LR" \
    DROPOUT="$DROPOUT" MAX_TOKENS="$MAX_TOKENS" DEVICE_FLAGS="$DEVICE_FLAGS" FAIRSEQ_TRAIN="$FAIRSEQ_TRAIN" \
    PHASES="$PHASES" SEC_PER_EPOCH="" TITLE="IWSLT14 De-En, wide 108-head transformer" \
    HEAD_MAP_RUNS="$head_map" DEGREE_RUNS="dense np_k${mid}_$shown l1_$shown dsp_k$mid" PYTHON="$PYTHON" \
    bash examples/iwslt14_de_en/study.sh "$@"
