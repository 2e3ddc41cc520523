#!/usr/bin/env bash
# The main command: on a fresh machine, set up the environment, build the offline German-English corpus
# from Debian packages, pretrain the narrow 108-head transformer, fine-tune it with NeuroPrune to NP_BUDGET
# heads (one elimination pass at the end of the first epoch, then the pruned model trains on), evaluate
# both models (with sacrebleu's paired bootstrap between them) and write a results JSON, a PNG plot and a table. Re-running resumes/reuses finished steps.
# Usage: bash scripts/run_offline_demo.sh        (env overrides below; -h for this text)
set -euo pipefail

RUN_DIR=${RUN_DIR:-runs/offline_demo}
SOURCES=${SOURCES:-libreoffice}
CORPUS_DIR=${CORPUS_DIR:-data/offline_de_en_${SOURCES//,/_}}
MAX_PIECES=${MAX_PIECES:-40}
DATA_BIN=${DATA_BIN:-$CORPUS_DIR/data-bin$MAX_PIECES}
DENSE_UPDATES=${DENSE_UPDATES:-972}  # four epochs of the 243-update corpus: the whole run fits 25 minutes on 2 CPU cores
NP_METHOD=${NP_METHOD:-neuroprune_plus}  # neuroprune_plus: the pass chosen on valid (examples README); neuroprune: the paper's
NP_BUDGET=${NP_BUDGET:-54}  # heads kept, exactly, by the pass at the end of the first fine-tuning epoch
NP_EPOCHS=${NP_EPOCHS:-2}   # fine-tuning epochs: the pruned model trains with its heads fixed after the first
ALPHA=${ALPHA:-1e-5}  # the strength chosen on valid for NeuroPrune+ (examples/iwslt14_de_en/results/seed_study/choices/)
BETA=${BETA:-1e-4}
BEAM=${BEAM:-5}
PYTHON=${PYTHON:-.venv/bin/python}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,6p "$0"; exit 0; fi
cd "$(dirname "$0")/.."
(( NP_EPOCHS >= 2 )) || { echo "run_offline_demo.sh: NP_EPOCHS=$NP_EPOCHS: expected >= 2 (the pruned model trains after its pass)" >&2; exit 1; }
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

step "5/6 $NP_METHOD fine-tuning to $NP_BUDGET heads ($NP_EPOCHS epochs, the pass after the first; alpha=$ALPHA beta=$BETA)"
DATA_BIN="$DATA_BIN" PRETRAINED="$RUN_DIR/dense/checkpoint_last.pt" SAVE_DIR="$RUN_DIR/neuroprune" \
    METHOD="$NP_METHOD" BUDGET="$NP_BUDGET" BUDGET_PASSES=1 PRUNE_START_EPOCH=1 MAX_EPOCH="$NP_EPOCHS" \
    ALPHA="$ALPHA" BETA="$BETA" bash examples/iwslt14_de_en/finetune.sh

step "6/6 evaluation (beam $BEAM, the whole test split and its pairs of <= $MAX_PIECES pieces) and summary"
for model in dense:dense neuroprune:$NP_METHOD; do
    "$PYTHON" -m neuroprune_fairseq.tools.evaluate --checkpoint "$RUN_DIR/${model%%:*}/checkpoint_last.pt" --data-bin "$DATA_BIN" \
        --out "$RUN_DIR/records/${model%%:*}.json" --overwrite --name "${model%%:*}" --method "${model#*:}" --beam "$BEAM" \
        --max-pieces "$MAX_PIECES" --text-out "$RUN_DIR/records/${model%%:*}" --cpu
done
"$PYTHON" -m neuroprune.tools.summarize "$RUN_DIR/records/dense.json" "$RUN_DIR/records/neuroprune.json" \
    --out-json "$RUN_DIR/results.json" --out-png "$RUN_DIR/results.png"
"$PYTHON" -m neuroprune.tools.significance --refs "$RUN_DIR/records/dense.ref" --system "dense=$RUN_DIR/records/dense.hyp" \
    --system "neuroprune=$RUN_DIR/records/neuroprune.hyp" --out "$RUN_DIR/significance.json" --overwrite
echo
echo "wrote $RUN_DIR/results.json, $RUN_DIR/results.png and $RUN_DIR/significance.json (paired bootstrap) in $(( $(date +%s) - START ))s"
