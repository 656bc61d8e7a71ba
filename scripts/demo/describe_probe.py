"""The description a question about a picture thinks first (answer thinking's first step:
the picture read into its caption), against the scene's true caption, on random held-out
pictures, by object count; a few wrong descriptions. Every answer and every edit with
thinking starts from this description.

    .venv/bin/python scripts/demo/describe_probe.py MODEL_DIR N      # N random scenes
"""

import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

SEED = 777
SHOWN_FAILURES = 6


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rng = np.random.default_rng(SEED)
    right, seen = collections.Counter(), collections.Counter()
    failures = []
    for i in range(n):
        scene = world.sample_scene(rng)
        result = pipeline.run(JobSpec("ask", "how many shapes are there",
                                      images=[world.render(scene)], params={"seed": i}))
        count = len(scene.objects)
        seen[count] += 1
        if result.thinking == world.caption(scene):
            right[count] += 1
        elif len(failures) < SHOWN_FAILURES:
            failures.append(f"{result.thinking!r} != {world.caption(scene)!r}")
    print(f"described exactly: {sum(right.values())} / {n}")
    for count in sorted(seen):
        print(f"  {count} object(s): {right[count]}/{seen[count]}")
    for failure in failures:
        print("   ", failure)


if __name__ == "__main__":
    main()
