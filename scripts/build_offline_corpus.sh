#!/usr/bin/env bash
# Build the offline German-English corpus (LibreOffice help + Ding example
# sentences) from Debian packages.  Downloads the .deb files with
# `apt-get download` (skipped when already present), unpacks them with
# `dpkg -x` (nothing is installed), then runs
# neuroprune.corpus.offline_de_en.  Relative paths are taken from the
# repository root.
set -euo pipefail

OUT_DIR=${OUT_DIR:-data/offline_de_en}
WORK_DIR=${WORK_DIR:-data/debian_packages}
PYTHON=${PYTHON:-.venv/bin/python}
VALID=${VALID:-1500}
TEST=${TEST:-1500}
SEED=${SEED:-1}
SOURCES=${SOURCES:-libreoffice,ding}
MAX_LEN_RATIO=${MAX_LEN_RATIO:-3}
PACKAGES=(libreoffice-help-de libreoffice-help-en-us trans-de-en)

usage() {
    echo "usage: [OUT_DIR=$OUT_DIR] [WORK_DIR=$WORK_DIR] [PYTHON=$PYTHON] [VALID=$VALID]" \
         "[TEST=$TEST] [SEED=$SEED] [MAX_LEN_RATIO=$MAX_LEN_RATIO] [SOURCES=$SOURCES] $0 [-h]"
}

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
env_only_args usage "$@"

cd "$(dirname "$0")/.."
for tool in apt-get apt-cache dpkg; do
    command -v "$tool" >/dev/null || die "'$tool' not found; this script needs a Debian/Ubuntu apt system"
done
require_python

DEB_DIR="$WORK_DIR/debs"
EXTRACTED_DIR="$WORK_DIR/extracted"
mkdir -p "$DEB_DIR" "$EXTRACTED_DIR"
start=$SECONDS

missing=()
for package in "${PACKAGES[@]}"; do
    compgen -G "$DEB_DIR/${package}_*.deb" >/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "[1/3] .deb files already in $DEB_DIR, skipping download"
else
    echo "[1/3] downloading ${missing[*]} into $DEB_DIR"
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        echo "      package lists lack them, running apt-get update"
        apt-get update -qq || die "apt-get update failed (needs root and network); download" \
            "${missing[*]} by hand into $DEB_DIR and re-run"
    fi
    (cd "$DEB_DIR" && apt-get download "${missing[@]}") \
        || die "apt-get download ${missing[*]} failed; put the .deb files into $DEB_DIR and re-run"
fi

echo "[2/3] unpacking into $EXTRACTED_DIR (dpkg -x, nothing is installed)"
for package in "${PACKAGES[@]}"; do
    debs=("$DEB_DIR/${package}"_*.deb)
    [ ${#debs[@]} -eq 1 ] || die "expected one $DEB_DIR/${package}_*.deb, found ${#debs[@]}; remove the old ones"
    rm -rf "${EXTRACTED_DIR:?}/$package"
    dpkg -x "${debs[0]}" "$EXTRACTED_DIR/$package"
    echo "      $package <- ${debs[0]##*/}"
done

echo "[3/3] building the corpus into $OUT_DIR"
"$PYTHON" -m neuroprune.corpus.offline_de_en --extracted "$EXTRACTED_DIR" --out "$OUT_DIR" \
    --valid "$VALID" --test "$TEST" --seed "$SEED" --max-len-ratio "$MAX_LEN_RATIO" --sources "$SOURCES"
echo "done in $((SECONDS - start)) s"
