#!/usr/bin/env bash
# The README's main job: sets up .venv, then plays a recording into the live node and reports what it published.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
VENV=${CSS_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
python scripts/demo.py "$@"
