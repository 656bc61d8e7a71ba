#!/usr/bin/env bash
# Retrains the shipped ShapesWorld demo model (resources/models/shapes-demo) from scratch,
# reproducibly by seed, on the CPU: 5200 steps, then 1500 more (69.0 + 21.0 = 90.0 minutes
# measured, with other work on the machine early in stage 1; on 2 idle cores about 88: keep other
# torch work off the machine meanwhile, two processes each spinning 2 OpenMP threads on 2 cores
# slow both several-fold).
#  - whole-canvas (MaskGIT) image layout, the task mix generate .32 / edit .18 / inpaint .12 /
#    ask .28 / think .1, cosine mask-ratio schedule (more heavily masked canvases);
#  - thinking mode (llada2_uni.md §4.4): "think" batches teach writing the full caption from a
#    prompt, and half the drawings follow prompt + caption (app/demo/data.py THINKING_RATE);
#  - the grid-position probe (app/demo/position_probe.py) at weight 1: early layers learn each
#    image cell's row and column, which the model needs to put "a red circle at the top left"
#    in the right cells;
#  - the scene probe (app/demo/scene_probe.py) at weight 1: every image cell encodes the scene
#    its image shows or must show (what the prompt says), so the canvas reads the prompt;
#  - a tokenizer with one token per two-word name ("top left", "blue background"), so words
#    mean the same wherever they stand;
#  - RoPE base with a 16-code period (GRID_ROPE_THETA), image-code rows initialised from their
#    pixel colours;
#  - last, no training: the tokenizer's text rewrites (app/demo/retokenize.py, session 9), so
#    "change the background to orange" reads the "orange background" token. The shipped weights
#    were trained without them, hence --no-text-rewrites in both stages.
# The block-diffusion recipe (--image-layout blocks) was tried in session 2 and did not beat the
# canvas one within the same budget; see the issue notes.
# The shipped model was trained before text answers' eos padding was down-weighted
# (app/demo/data.py TEXT_PAD_WEIGHT, 0.1 by default now), so this recipe keeps weight 1.0; a run
# with 0.1 and the copy head (session 6 of issue 3's notes) answered more questions right but
# inpainted worse and was not shipped.
# Usage: scripts/train_demo.sh [OUT_DIR]   (default: resources/models/shapes-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-resources/models/shapes-demo}
mkdir -p "$OUT/training"
.venv/bin/python -m app.demo.train --out "$OUT" --seed 0 --steps 5200 --lr 2e-3 \
  --image-layout canvas --task-mix generate=0.32,edit=0.18,inpaint=0.12,ask=0.28,think=0.1 \
  --mask-schedule cosine --position-aux 1.0 --scene-aux 1.0 --text-pad-weight 1.0 \
  --no-text-rewrites | tee "$OUT/training/train.log"
mv "$OUT/training_log.json" "$OUT/training/"
# Stage 2: 1500 more steps at a quarter of the learning rate, more text-to-image batches.
.venv/bin/python -m app.demo.train --init "$OUT" --out "$OUT" --seed 1 --steps 1500 --lr 5e-4 \
  --warmup 50 --image-layout canvas \
  --task-mix generate=0.42,edit=0.18,inpaint=0.1,ask=0.25,think=0.05 \
  --mask-schedule cosine --position-aux 1.0 --scene-aux 1.0 --text-pad-weight 1.0 \
  --no-text-rewrites | tee "$OUT/training/train-stage2.log"
mv "$OUT/training_log.json" "$OUT/training/training_log-stage2.json"
.venv/bin/python -m app.demo.retokenize "$OUT"
