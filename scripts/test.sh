#!/usr/bin/env bash
# The README's test command: set up the environment if needed, then run the default test suite.
# Usage: bash scripts/test.sh [pytest args...]      (env: VENV=.venv)
set -euo pipefail

VENV=${VENV:-.venv}

cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
"$VENV/bin/python" -m pytest -ra "$@"
