#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment: torch CPU first, fairseq-fixed built without
# build isolation (so pip never pulls a second torch), then this package in editable mode.
# Usage: bash scripts/setup_env.sh        (env: VENV=.venv PYTHON=python3 TORCH_VERSION=2.13.0)
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
STAMP="$VENV/.neuroprune-env"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    echo "usage: bash scripts/setup_env.sh   (env VENV, PYTHON, TORCH_VERSION)"; exit 0
fi
cd "$(dirname "$0")/.."

want="torch=$TORCH_VERSION $(sha256sum setup.py | cut -c1-16)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c "import fairseq, neuroprune, neuroprune_fairseq" 2>/dev/null; then
    echo "[setup] reusing $VENV ($want)"
    exit 0
fi

echo "[setup] creating $VENV (torch==$TORCH_VERSION, fairseq-fixed built without isolation; ~3 min)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
constraints="$VENV/constraints.txt"
echo "torch==$TORCH_VERSION" > "$constraints"
"${PIP[@]}" "torch==$TORCH_VERSION" "numpy<3" cython setuptools wheel
"${PIP[@]}" -c "$constraints" --no-build-isolation fairseq-fixed==0.12.3.1
"${PIP[@]}" -c "$constraints" --no-build-isolation -e ".[test,plots,iwslt]"
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__"
echo "$want" > "$STAMP"
echo "[setup] done"
