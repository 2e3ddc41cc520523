#!/usr/bin/env bash
# The README's test command: set up the environment if needed, then run every test (what CI runs).
# Usage: bash scripts/test.sh [pytest args...]      (env: VENV=.venv)
#        bash scripts/test.sh -m "not slow"        the fast loop: unit tests and one fairseq end-to-end run
set -euo pipefail

VENV=${VENV:-.venv}

cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
"$VENV/bin/python" -m pytest -ra "$@"
