#!/usr/bin/env bash
# Stage 2 of the paper's MT recipe: NeuroPrune fine-tuning from a dense checkpoint (penalties every
# step, redundant-head elimination after every epoch). The first launch starts from PRETRAINED with a fresh
# optimizer, scheduler and data iterator (--finetune-from-model), so epochs count from 1 again; a later
# launch with the same SAVE_DIR resumes from its checkpoint_last.pt.
# Usage: DATA_BIN=... PRETRAINED=runs/dense/checkpoint_best.pt SAVE_DIR=runs/neuroprune bash examples/iwslt14_de_en/train_neuroprune.sh [extra fairseq-train args]
set -euo pipefail

DATA_BIN=${DATA_BIN:-data/offline_de_en/data-bin}
PRETRAINED=${PRETRAINED:-runs/dense/checkpoint_best.pt}
SAVE_DIR=${SAVE_DIR:-runs/neuroprune}
ARCH=${ARCH:-neuroprune_iwslt_de_en_narrow}
ALPHA=${ALPHA:-1e-4}
BETA=${BETA:-1e-2}
THETA=${THETA:-0.3}
EPS=${EPS:-1e-4}
PRUNE_START_EPOCH=${PRUNE_START_EPOCH:-1}
MAX_EPOCH=${MAX_EPOCH:-2}
LR=${LR:-5e-4}
MAX_TOKENS=${MAX_TOKENS:-2048}
DROPOUT=${DROPOUT:-0.1}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
SEED=${SEED:-1}
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-.venv/bin/fairseq-train}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n 2,5p "$0"; exit 0; fi
[[ -f "$PRETRAINED" ]] || { echo "PRETRAINED=$PRETRAINED does not exist: run train_dense.sh first" >&2; exit 1; }
[[ -f "$DATA_BIN/dict.de.txt" ]] || { echo "DATA_BIN=$DATA_BIN has no dict.de.txt: run scripts/binarize.sh first" >&2; exit 1; }

# shellcheck disable=SC2086
"$FAIRSEQ_TRAIN" "$DATA_BIN" --user-dir neuroprune_fairseq --task neuroprune_translation \
    --source-lang de --target-lang en \
    --arch "$ARCH" --share-all-embeddings --encoder-normalize-before --decoder-normalize-before \
    --dropout "$DROPOUT" \
    --criterion neuroprune_label_smoothed_cross_entropy --label-smoothing "$LABEL_SMOOTHING" \
    --np-alpha "$ALPHA" --np-beta "$BETA" --np-theta "$THETA" --np-eps "$EPS" --np-prune-start-epoch "$PRUNE_START_EPOCH" \
    --finetune-from-model "$PRETRAINED" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$LR" --lr-scheduler fixed \
    --max-tokens "$MAX_TOKENS" --max-epoch "$MAX_EPOCH" --seed "$SEED" \
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --log-format simple --log-interval 50 \
    $DEVICE_FLAGS "$@"
