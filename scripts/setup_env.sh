#!/usr/bin/env bash
# Creates .venv with the ROS 2 wheels, the package and the training module. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p | grep -q libusb-1.0.so.0; then  # open3d (simulator) needs it
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

VENV=${CSS_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
STAMP="$VENV/.installed"
INPUTS=$(cat requirements/*.txt setup.py training/pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$INPUTS" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt \
    -r requirements/ros-wheels.txt -r requirements/dev.txt -e . -e ./training 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c 'import rclpy, onnxruntime, torch, open3d, css_perception, css_training'
  echo "$INPUTS" >"$STAMP"
fi
echo "environment ready: $VENV"
