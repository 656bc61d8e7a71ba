"""A picture of what a demo model's edits look like: one row per held-out edit (the same draws
as `scripts/demo/sweep.py edit`), source | model output | the right result, and one line per
edit with the instruction, the right caption and what the scene parser read (None: unreadable).

    .venv/bin/python scripts/demo/edit_gallery.py MODEL_DIR N OUT.png ['{"temperature": 1.0}']
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.evaluate import EVAL_SEED, judge_edit  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

GAP = 128  # grey between pictures
ZOOM = 3


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n, out = int(sys.argv[2]), Path(sys.argv[3])
    params = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    rng = np.random.default_rng(EVAL_SEED + 11)
    side = world.IMAGE_SIZE
    column_gap = np.full((side, 4, 3), GAP, np.uint8)
    rows = []
    for i in range(n):
        edit = judge_edit(pipeline, rng, {**params, "seed": EVAL_SEED + i})
        print(f"{i}: {edit.instruction!r} | right: {world.caption(edit.target)} | "
              f"read: {edit.parsed and world.caption(edit.parsed)}")
        row = np.concatenate([world.render(edit.scene), column_gap, edit.image, column_gap,
                              world.render(edit.target)], axis=1)
        rows.append(np.pad(row, ((2, 2), (0, 0), (0, 0)), constant_values=GAP))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * ZOOM, grid.shape[0] * ZOOM),
                                 Image.NEAREST).save(out)


if __name__ == "__main__":
    main()
