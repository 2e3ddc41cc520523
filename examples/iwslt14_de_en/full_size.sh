#!/usr/bin/env bash
# The paper's full-size MT setup for a GPU user: IWSLT14 De-En (prepare-iwslt14.sh), the wide 108-head
# architecture (neuroprune_iwslt_de_en), EPOCHS of dense pretraining (fairseq's IWSLT recipe: lr 5e-4,
# inverse_sqrt, warmup 4000, dropout 0.3), then study.sh from that checkpoint: FINETUNE_EPOCHS of every
# method with its heads chosen in the first SELECT_EPOCHS, at the head BUDGETS and SEEDS, NeuroPrune's
# strength chosen among every alpha x beta on valid; every run evaluated, exported, benchmarked, tabled and
# plotted in RESULTS_DIR. Resumable (finished steps are skipped). The paper: alpha in {0.005 ... 0.5}, beta in
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
BUDGETS=${BUDGETS:-"81 54 27"}
SELECT_BUDGET=${SELECT_BUDGET:-54}  # where NeuroPrune's strength and DSP's mode are chosen (valid, first seed)
SEEDS=${SEEDS:-"1 2 3"}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-$EPOCHS}
SELECT_EPOCHS=${SELECT_EPOCHS:-4}  # every method has chosen its heads by then (DSP: its anneal spans them)
DENSE_LR=${DENSE_LR:-5e-4}
WARMUP=${WARMUP:-4000}
FINETUNE_LR=${FINETUNE_LR:-2.5e-4}  # about where the dense inverse_sqrt schedule ends (~16k updates)
DROPOUT=${DROPOUT:-0.3}
MAX_TOKENS=${MAX_TOKENS:-4096}
DEVICE_FLAGS=${DEVICE_FLAGS:---fp16}
PHASES=${PHASES:-"train evaluate export bench summary"}  # study.sh's phases after the pretraining
PYTHON=${PYTHON:-.venv/bin/python}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-.venv/bin/fairseq-train}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
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
for alpha in $ALPHAS; do for beta in $BETAS; do strengths+=" a${alpha}b${beta}:$alpha:$beta"; done; done

STUDY_DIR="$RUN_DIR" RESULTS_DIR="$RESULTS_DIR" DATA_BIN="$DATA_BIN" PRETRAINED="$RUN_DIR/dense/checkpoint_last.pt" \
    EPOCHS="$FINETUNE_EPOCHS" SELECT_EPOCHS="$SELECT_EPOCHS" STRENGTHS="$strengths" BUDGETS="$BUDGETS" \
    SELECT_BUDGET="$SELECT_BUDGET" SEEDS="$SEEDS" ARCH="$ARCH" LR="$FINETUNE_LR" \
    DROPOUT="$DROPOUT" MAX_TOKENS="$MAX_TOKENS" DEVICE_FLAGS="$DEVICE_FLAGS" FAIRSEQ_TRAIN="$FAIRSEQ_TRAIN" \
    PHASES="$PHASES" SEC_PER_RUN="" LANES="${LANES:-1}" THREADS="${THREADS:-$(nproc)}" \
    TITLE="IWSLT14 De-En, wide 108-head transformer" PYTHON="$PYTHON" \
    bash examples/iwslt14_de_en/study.sh "$@"
