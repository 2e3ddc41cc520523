#!/usr/bin/env bash
# Binarize a de-en text corpus for fairseq: train a joint sentencepiece BPE
# model on the TRAIN split only (both sides), apply it to all splits, then run
# fairseq-preprocess with a joined dictionary.  DATA_DIR must hold
# {train,valid,test}.{de,en}.  With MAX_PIECES=N > 0, train pairs with more
# than N pieces on either side are dropped; the count goes to
# SPM_DIR/train_length_filter.json.  Relative paths are taken from the
# repository root.
set -euo pipefail

DATA_DIR=${DATA_DIR:-data/offline_de_en}
SPM_DIR=${SPM_DIR:-$DATA_DIR/spm}
DEST_DIR=${DEST_DIR:-$DATA_DIR/data-bin}
VOCAB_SIZE=${VOCAB_SIZE:-8000}
MAX_PIECES=${MAX_PIECES:-0}
WORKERS=${WORKERS:-2}
PYTHON=${PYTHON:-.venv/bin/python}
FAIRSEQ_PREPROCESS=${FAIRSEQ_PREPROCESS:-fairseq-preprocess}

usage() {
    echo "usage: [DATA_DIR=$DATA_DIR] [SPM_DIR=$SPM_DIR] [DEST_DIR=$DEST_DIR] [VOCAB_SIZE=$VOCAB_SIZE]" \
         "[MAX_PIECES=$MAX_PIECES] [WORKERS=$WORKERS] [PYTHON=$PYTHON]" \
         "[FAIRSEQ_PREPROCESS=$FAIRSEQ_PREPROCESS] $0 [-h]"
}

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
env_only_args usage "$@"

cd "$(dirname "$0")/.."
require_python
# fairseq-preprocess from PATH, else next to PYTHON (the venv's bin folder).
if ! command -v "$FAIRSEQ_PREPROCESS" >/dev/null; then
    [ -x "$(dirname "$PYTHON")/$FAIRSEQ_PREPROCESS" ] \
        || die "FAIRSEQ_PREPROCESS=$FAIRSEQ_PREPROCESS not found on PATH nor next to PYTHON=$PYTHON"
    FAIRSEQ_PREPROCESS="$(dirname "$PYTHON")/$FAIRSEQ_PREPROCESS"
fi
for split in train valid test; do
    for lang in de en; do
        [ -s "$DATA_DIR/$split.$lang" ] || die "DATA_DIR=$DATA_DIR: missing or empty $split.$lang"
    done
done
start=$SECONDS
SPM=("$PYTHON" -m neuroprune.corpus.spm_tool)

echo "[1/3] training sentencepiece BPE (vocab $VOCAB_SIZE) on $DATA_DIR/train.{de,en}"
"${SPM[@]}" train --inputs "$DATA_DIR/train.de" "$DATA_DIR/train.en" \
    --model-prefix "$SPM_DIR/spm" --vocab-size "$VOCAB_SIZE"

echo "[2/3] encoding all splits (train pairs over MAX_PIECES=$MAX_PIECES pieces dropped, 0 = keep all)"
"${SPM[@]}" encode --model "$SPM_DIR/spm.model" --src "$DATA_DIR/train.de" --tgt "$DATA_DIR/train.en" \
    --out-prefix "$SPM_DIR/train" --max-pieces "$MAX_PIECES" --report "$SPM_DIR/train_length_filter.json"
for split in valid test; do
    "${SPM[@]}" encode --model "$SPM_DIR/spm.model" --src "$DATA_DIR/$split.de" \
        --tgt "$DATA_DIR/$split.en" --out-prefix "$SPM_DIR/$split"
done

echo "[3/3] fairseq-preprocess into $DEST_DIR"
# fairseq-preprocess refuses an existing dictionary; replace only the files this script writes.
if [ -e "$DEST_DIR/dict.de.txt" ]; then
    echo "      replacing the previous binarized files in $DEST_DIR"
    rm -f "$DEST_DIR"/dict.{de,en}.txt "$DEST_DIR"/{train,valid,test}.de-en.{de,en}.{bin,idx} \
        "$DEST_DIR/preprocess.log" "$DEST_DIR/spm.model"
fi
"$FAIRSEQ_PREPROCESS" --source-lang de --target-lang en --joined-dictionary --workers "$WORKERS" \
    --trainpref "$SPM_DIR/train" --validpref "$SPM_DIR/valid" --testpref "$SPM_DIR/test" \
    --destdir "$DEST_DIR"
cp "$SPM_DIR/spm.model" "$DEST_DIR/spm.model"
echo "done in $((SECONDS - start)) s: $DEST_DIR (sentencepiece model copied as $DEST_DIR/spm.model)"
