#!/usr/bin/env bash
# Stage 1 of the paper's MT recipe: dense pretraining (no penalties, no elimination) with the plugin's
# task, so the checkpoint already carries all-ones head masks.
# Usage: DATA_BIN=data/offline_de_en/data-bin SAVE_DIR=runs/dense bash examples/iwslt14_de_en/train_dense.sh [extra fairseq-train args]
set -euo pipefail

DATA_BIN=${DATA_BIN:-data/offline_de_en/data-bin}
SAVE_DIR=${SAVE_DIR:-runs/dense}
ARCH=${ARCH:-neuroprune_iwslt_de_en_narrow}
MAX_EPOCH=${MAX_EPOCH:-5}
MAX_UPDATE=${MAX_UPDATE:-0}
LR=${LR:-1.5e-3}
WARMUP=${WARMUP:-300}
MAX_TOKENS=${MAX_TOKENS:-2048}
DROPOUT=${DROPOUT:-0.1}
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0001}
LABEL_SMOOTHING=${LABEL_SMOOTHING:-0.1}
SEED=${SEED:-1}
DEVICE_FLAGS=${DEVICE_FLAGS:---cpu}
FAIRSEQ_TRAIN=${FAIRSEQ_TRAIN:-.venv/bin/fairseq-train}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n '2,/^set -euo pipefail/{/^set /!p}' "$0"; exit 0; fi
[[ -f "$DATA_BIN/dict.de.txt" ]] || { echo "DATA_BIN=$DATA_BIN has no dict.de.txt: run scripts/binarize.sh first" >&2; exit 1; }

# shellcheck disable=SC2086
"$FAIRSEQ_TRAIN" "$DATA_BIN" --user-dir neuroprune_fairseq --task neuroprune_translation \
    --source-lang de --target-lang en \
    --arch "$ARCH" --share-all-embeddings --encoder-normalize-before --decoder-normalize-before \
    --dropout "$DROPOUT" --weight-decay "$WEIGHT_DECAY" \
    --criterion neuroprune_label_smoothed_cross_entropy --label-smoothing "$LABEL_SMOOTHING" \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" \
    --max-tokens "$MAX_TOKENS" --max-epoch "$MAX_EPOCH" --max-update "$MAX_UPDATE" --seed "$SEED" \
    --save-dir "$SAVE_DIR" --no-epoch-checkpoints --log-format simple --log-interval 50 \
    $DEVICE_FLAGS "$@"
