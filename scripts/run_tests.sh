#!/usr/bin/env bash
# The README's test command: sets up .venv, then the suite (it includes ruff and the import-linter contracts).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
VENV=${CSS_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
python -m pytest -q "$@"
