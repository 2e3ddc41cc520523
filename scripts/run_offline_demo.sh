#!/usr/bin/env bash
# The main command: on a fresh machine, set up the environment, build the offline German-English corpus
# from Debian packages, pretrain the narrow 108-head transformer, fine-tune it with NeuroPrune, evaluate
# both models and write a results JSON, a PNG plot and a table. Re-running resumes/reuses finished steps.
# Usage: bash scripts/run_offline_demo.sh        (env overrides below; -h for this text)
set -euo pipefail

RUN_DIR=${RUN_DIR:-runs/offline_demo}
SOURCES=${SOURCES:-libreoffice}
CORPUS_DIR=${CORPUS_DIR:-data/offline_de_en_${SOURCES//,/_}}
MAX_PIECES=${MAX_PIECES:-40}
DATA_BIN=${DATA_BIN:-$CORPUS_DIR/data-bin$MAX_PIECES}
DENSE_UPDATES=${DENSE_UPDATES:-1600}
NP_EPOCHS=${NP_EPOCHS:-1}
ALPHA=${ALPHA:-1e-4}
BETA=${BETA:-1e-3}
THETA=${THETA:-0.3}
BEAM=${BEAM:-5}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,5p "$0"; exit 0; fi
cd "$(dirname "$0")/.."
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

step "1/6 environment"
bash scripts/setup_env.sh

step "2/6 offline corpus ($SOURCES) -> $CORPUS_DIR"
if [[ -f "$CORPUS_DIR/corpus_stats.json" ]]; then echo "reusing $CORPUS_DIR"; else OUT_DIR="$CORPUS_DIR" SOURCES="$SOURCES" bash scripts/build_offline_corpus.sh; fi

step "3/6 sentencepiece + fairseq-preprocess -> $DATA_BIN (train pairs <= $MAX_PIECES pieces per side)"
if [[ -f "$DATA_BIN/dict.de.txt" ]]; then echo "reusing $DATA_BIN"; else
    DATA_DIR="$CORPUS_DIR" SPM_DIR="$CORPUS_DIR/spm$MAX_PIECES" DEST_DIR="$DATA_BIN" MAX_PIECES="$MAX_PIECES" bash scripts/binarize.sh
fi

step "4/6 dense pretraining ($DENSE_UPDATES updates, neuroprune_iwslt_de_en_narrow)"
DATA_BIN="$DATA_BIN" SAVE_DIR="$RUN_DIR/dense" MAX_EPOCH=1000 MAX_UPDATE="$DENSE_UPDATES" \
    bash examples/iwslt14_de_en/train_dense.sh

step "5/6 NeuroPrune fine-tuning ($NP_EPOCHS epoch(s), alpha=$ALPHA beta=$BETA theta=$THETA)"
DATA_BIN="$DATA_BIN" PRETRAINED="$RUN_DIR/dense/checkpoint_last.pt" SAVE_DIR="$RUN_DIR/neuroprune" \
    METHOD=neuroprune MAX_EPOCH="$NP_EPOCHS" ALPHA="$ALPHA" BETA="$BETA" THETA="$THETA" bash examples/iwslt14_de_en/finetune.sh

step "6/6 evaluation (beam $BEAM, the whole test split and its pairs of <= $MAX_PIECES pieces) and summary"
for model in dense neuroprune; do
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$RUN_DIR/$model/checkpoint_last.pt" --data-bin "$DATA_BIN" \
        --out "$RUN_DIR/records/$model.json" --overwrite --name "$model" --method "$model" --beam "$BEAM" \
        --max-pieces "$MAX_PIECES" --cpu
done
"$PYTHON" -m neuroprune.tools.summarize "$RUN_DIR/records/dense.json" "$RUN_DIR/records/neuroprune.json" \
    --out-json "$RUN_DIR/results.json" --out-png "$RUN_DIR/results.png"
echo
echo "wrote $RUN_DIR/results.json and $RUN_DIR/results.png in $(( $(date +%s) - START ))s"
