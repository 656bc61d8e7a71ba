"""Instruction-edit success of a demo model under sampling-parameter variants: held-out scenes
and instructions (from EVAL_SEED + 11, so not the draws of `unmask eval`), judged like `unmask
eval` (the scene parser must read exactly the edited scene).

    .venv/bin/python scripts/demo/edit_sweep.py MODEL_DIR N '{"cfg": 4.0}' '{"image_steps": 32}'
"""

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.evaluate import EVAL_SEED  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    for variant in sys.argv[3:] or ["{}"]:
        params = json.loads(variant)
        rng = np.random.default_rng(EVAL_SEED + 11)
        passed, unreadable, by_kind = 0, 0, Counter()
        start = time.perf_counter()
        for i in range(n):
            scene = world.sample_scene(rng)
            instruction, target = world.sample_edit(scene, rng)
            result = pipeline.run(JobSpec("edit", instruction, images=[world.render(scene)],
                                          params={**params, "seed": EVAL_SEED + i}))
            parsed = world.parse_image(result.image)
            ok = parsed == target
            passed += ok
            unreadable += parsed is None
            by_kind[(instruction.split()[0], ok)] += 1
        kinds = ", ".join(f"{k} {by_kind[(k, True)]}/{by_kind[(k, True)] + by_kind[(k, False)]}"
                          for k in sorted({k for k, _ in by_kind}))
        print(f"{variant}: {passed}/{n} right, {unreadable} unreadable ({kinds}; "
              f"{time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
