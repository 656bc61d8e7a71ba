#!/usr/bin/env bash
# Retrains the shipped ShapesWorld demo model (resources/models/shapes-demo) from scratch,
# reproducibly by seed, on the CPU. Three stages, exactly as shipped (2 cores: about 35 + 39 + 32
# minutes on an idle machine):
#  1. 1400 steps from random weights: whole-canvas (MaskGIT) image layout, RoPE base 10000,
#     random code embeddings, the task mix generate .35 / edit .2 / inpaint .15 / ask .3;
#  2. continued 2000 steps with the cosine mask-ratio schedule (more heavily masked canvases);
#  3. continued with a lower learning rate; the shipped weights are its step-1800 checkpoint
#     (1801 updates of a schedule laid out for 2000).
# The block-diffusion recipe (--image-layout blocks, the default of app.demo.train) was tried in
# session 2 and did not beat this one within the same budget; see the issue notes.
# Usage: scripts/train_demo.sh [OUT_DIR]   (default: resources/models/shapes-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-resources/models/shapes-demo}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=.venv/bin/python
COMMON=(--image-layout canvas --task-mix generate=0.35,edit=0.2,inpaint=0.15,ask=0.3)
$PY -m app.demo.train "${COMMON[@]}" --out "$WORK/stage1" --seed 0 --lr 2e-3 --steps 1400 \
  --rope-theta 10000 --no-code-init
$PY -m app.demo.train "${COMMON[@]}" --init "$WORK/stage1" --out "$WORK/stage2" --seed 1 \
  --lr 1.5e-3 --warmup 50 --mask-schedule cosine --steps 2000
$PY -m app.demo.train "${COMMON[@]}" --init "$WORK/stage2" --out "$OUT" --seed 2 --lr 1e-3 \
  --steps 1801 --schedule-steps 2000
