#!/usr/bin/env bash
# The README's test command: sets up .venv, then lint, import contracts and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
VENV=${CSS_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
ruff check .
lint-imports
python -m pytest -q "$@"
