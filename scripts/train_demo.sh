#!/usr/bin/env bash
# Retrains the shipped ShapesWorld demo model (resources/models/shapes-demo) from scratch,
# reproducibly by seed, on the CPU (2 cores: about 90 minutes). Three phases, exactly as shipped
# (the later phases were cut short and restarted to fit a session; the flags replay that):
#  1. 1201 steps of block-diffusion training, unweighted loss, the first task mix, with the
#     learning-rate schedule laid out for 3200 steps;
#  2. from phase 1, 201 steps with hard-cell loss weighting (first row and object edges x5) and
#     more text-to-image, warmup 50, schedule laid out for 1600 steps;
#  3. from phase 2, 650 steps: warmup 10 and a full cosine decay from 1e-3.
# Usage: scripts/train_demo.sh [OUT_DIR]   (default: resources/models/shapes-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-resources/models/shapes-demo}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=.venv/bin/python
$PY -m app.demo.train --out "$WORK/phase1" --seed 0 --lr 2e-3 --warmup 100 \
  --steps 1201 --schedule-steps 3200 --hard-cell-weight 1 \
  --task-mix generate=0.35,edit=0.2,inpaint=0.15,ask=0.3
$PY -m app.demo.train --init "$WORK/phase1" --out "$WORK/phase2" --seed 1 --lr 1.5e-3 \
  --warmup 50 --steps 201 --schedule-steps 1600
$PY -m app.demo.train --init "$WORK/phase2" --out "$OUT" --seed 2 --lr 1e-3 --warmup 10 \
  --steps 650
