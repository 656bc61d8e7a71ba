#!/usr/bin/env bash
# Sets up everything Unmask Studio needs in ./.venv, from scratch, idempotently.
# - a CPU build of torch (pinned to the release whose CPU wheel this project's machines carry;
#   set TORCH_INDEX_URL to pick another build, e.g. a CUDA one)
# - the project and its test tools (pip install -e .[test])
# - on Debian/Ubuntu as root: the system libraries Qt needs to run offscreen, Xvfb, and
#   desktop-file-utils (tests validate the .desktop entry with it)
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  for pkg in libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 xvfb desktop-file-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/pip install -q torch --index-url "$TORCH_INDEX_URL"
  else
    .venv/bin/pip install -q "torch==2.13.0"
  fi
fi
.venv/bin/pip install -q -e '.[test]'
