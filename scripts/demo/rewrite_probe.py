"""Edit thinking's text step alone: from the TRUE description of a scene and an instruction,
the edited scene's description (tasks.rewrite_description), by edit kind and object count, text
only (seconds). Kinds on two-object scenes that name one object by its shape (make2, move2,
remove2) test whether the model picks that object.

    .venv/bin/python scripts/demo/rewrite_probe.py MODEL_DIR N      # N random scenes
"""

import collections
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

SEED = 1311
SHOWN_FAILURES = 12


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    torch.set_num_threads(2)
    prompts = pipeline.prompts
    rng = np.random.default_rng(SEED)
    right, asked = collections.Counter(), collections.Counter()
    failures = []
    with torch.no_grad():
        for i in range(n):
            scene = world.sample_scene(rng)
            instruction, target = world.sample_edit(scene, rng)
            kind = f"{instruction.split()[0]}{len(scene.objects)}"
            prompt = prompts.rewrite_description(instruction, prompts.text(world.caption(scene)))
            params = {**pipeline.defaults, "seed": i}
            _, rewritten = pipeline._think(prompt, params, None, None, stop_ids=())
            asked[kind] += 1
            if rewritten == world.caption(target):
                right[kind] += 1
            elif len(failures) < SHOWN_FAILURES:
                failures.append(f"{instruction!r} on {world.caption(scene)!r}: {rewritten!r}")
    print(f"rewrite {sum(right.values())} / {n}")
    for kind in sorted(asked):
        print(f"  {kind:10s} {right[kind]}/{asked[kind]}")
    for failure in failures:
        print("   ", failure)


if __name__ == "__main__":
    main()
