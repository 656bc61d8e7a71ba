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
from app.demo.evaluate import EVAL_SEED  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
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
        scene = world.sample_scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        output = pipeline.run(JobSpec("edit", instruction, images=[world.render(scene)],
                                      params={**params, "seed": EVAL_SEED + i})).image
        parsed = world.parse_image(output)
        print(f"{i}: {instruction!r} | right: {world.caption(target)} | "
              f"read: {parsed and world.caption(parsed)}")
        row = np.concatenate([world.render(scene), column_gap, output, column_gap,
                              world.render(target)], axis=1)
        rows.append(np.pad(row, ((2, 2), (0, 0), (0, 0)), constant_values=GAP))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * ZOOM, grid.shape[0] * ZOOM),
                                 Image.NEAREST).save(out)


if __name__ == "__main__":
    main()
