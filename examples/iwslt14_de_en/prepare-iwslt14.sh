#!/usr/bin/env bash
# IWSLT14 de-en, following fairseq's examples/translation/prepare-iwslt14.sh:
# metadata stripped, sacremoses tokenisation (aggressive dash splits, no
# escaping), clean-corpus-n style length cleaning of train (1..175 tokens,
# ratio 1.5), lowercasing, valid = every 23rd train line, test = dev2010 +
# TEDX.dev2012 + tst2010 + tst2011 + tst2012.  Subwords: a joint
# sentencepiece BPE model (10k vocab) learnt on train, via scripts/binarize.sh,
# which also runs fairseq-preprocess.
#
# The archive is not downloaded unless IWSLT14_URL is set; the public file was
# https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz (mirror-dependent).
# Relative paths are taken from the repository root.
set -euo pipefail

WORK_DIR=${WORK_DIR:-data/iwslt14}
IWSLT14_ARCHIVE=${IWSLT14_ARCHIVE:-$WORK_DIR/de-en.tgz}
IWSLT14_URL=${IWSLT14_URL:-}
PREP_DIR=${PREP_DIR:-$WORK_DIR/iwslt14.tokenized.de-en}
DEST_DIR=${DEST_DIR:-$WORK_DIR/data-bin}
VOCAB_SIZE=${VOCAB_SIZE:-10000}
BINARIZE=${BINARIZE:-1}
PYTHON=${PYTHON:-.venv/bin/python}

usage() {
    echo "usage: [IWSLT14_ARCHIVE=$IWSLT14_ARCHIVE] [IWSLT14_URL=URL] [WORK_DIR=$WORK_DIR]" \
         "[PREP_DIR=$PREP_DIR] [DEST_DIR=$DEST_DIR] [VOCAB_SIZE=$VOCAB_SIZE]" \
         "[BINARIZE=$BINARIZE (0: stop after the tokenised text)] [PYTHON=$PYTHON] $0 [-h]"
}

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../scripts/lib.sh"
env_only_args usage "$@"

cd "$(dirname "$0")/../.."
require_python
start=$SECONDS

if [ -f "$IWSLT14_ARCHIVE" ]; then
    echo "[1/3] using archive $IWSLT14_ARCHIVE"
elif [ -n "$IWSLT14_URL" ]; then
    echo "[1/3] downloading $IWSLT14_URL to $IWSLT14_ARCHIVE"
    mkdir -p "$(dirname "$IWSLT14_ARCHIVE")"
    command -v curl >/dev/null || die "curl not found; download $IWSLT14_URL by hand to $IWSLT14_ARCHIVE"
    curl -fL --retry 2 -o "$IWSLT14_ARCHIVE.part" "$IWSLT14_URL" \
        || die "download of IWSLT14_URL=$IWSLT14_URL failed; fetch it by hand and set IWSLT14_ARCHIVE"
    mv "$IWSLT14_ARCHIVE.part" "$IWSLT14_ARCHIVE"
else
    die "IWSLT14_ARCHIVE=$IWSLT14_ARCHIVE: no such file; set IWSLT14_ARCHIVE=path/to/de-en.tgz" \
        "or IWSLT14_URL=https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz (or a mirror)"
fi

echo "[2/3] extracting, tokenising, cleaning and splitting into $PREP_DIR"
"$PYTHON" -m neuroprune.corpus.iwslt14 --archive "$IWSLT14_ARCHIVE" --out "$PREP_DIR"

if [ "$BINARIZE" = 0 ]; then
    echo "done in $((SECONDS - start)) s (BINARIZE=0: tokenised text only, in $PREP_DIR)"
    exit 0
fi
echo "[3/3] sentencepiece BPE (vocab $VOCAB_SIZE) and fairseq-preprocess into $DEST_DIR"
DATA_DIR="$PREP_DIR" SPM_DIR="$PREP_DIR/spm" DEST_DIR="$DEST_DIR" VOCAB_SIZE="$VOCAB_SIZE" \
    PYTHON="$PYTHON" scripts/binarize.sh
echo "done in $((SECONDS - start)) s"
