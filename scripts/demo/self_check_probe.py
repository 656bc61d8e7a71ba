"""How well a demo model's self-check works (app/engine/self_check.py), on held-out scenes.

1. As a judge: for two-object prompts, is the first drawing the scene its thinking states (by the
   scene parser), and did the model's read-back pass it? A good check passes the right drawings
   and catches the wrong ones.
2. As a fix: text to image (one and two objects) and instruction edits judged like `unmask eval`,
   with the self-check off and with up to K redraws, on the same scenes and seeds; seconds per
   job, median and mean (a redraw costs a whole drawing, so the mean shows the price).

    .venv/bin/python scripts/demo/self_check_probe.py MODEL_DIR N [K]
"""

import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.evaluate import EVAL_SEED, judge_edit, judge_t2i  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

SEED = EVAL_SEED + 23  # scenes of their own, not those of `unmask eval`


def as_judge(pipeline, n: int) -> None:
    tally = collections.Counter()
    missed = []
    for k in range(n):
        rng = np.random.default_rng(SEED + k)
        scene = world.sample_scene(rng, n_objects=2)
        prompt = world.sample_prompt(scene, rng)
        result = pipeline.run(JobSpec("generate", prompt, params={"seed": k, "self_check": 1}))
        first = result.checks[0]
        # the first drawing is the one a job without the check makes: draw it again to parse it
        plain = pipeline.run(JobSpec("generate", prompt, params={"seed": k, "self_check": 0}))
        parsed = world.parse_image(plain.image)
        right = parsed is not None and world.caption(parsed) == result.thinking
        tally[right, first.passed] += 1
        if right != first.passed and len(missed) < 4:
            missed.append(f"thinking {result.thinking!r}\n      drawn  "
                          f"{parsed and world.caption(parsed)!r}\n      read   {first.read!r}")
    print(f"judge, first drawings of {n} two-object prompts (drawn as thought / check passed):")
    print(f"  right and passed {tally[True, True]}, right but failed {tally[True, False]}, "
          f"wrong but passed {tally[False, True]}, wrong and failed {tally[False, False]}")
    for line in missed:
        print("    " + line)


def as_fix(pipeline, n: int, redraws: int) -> None:
    for k_redraws in (0, redraws):
        passed = collections.Counter()
        seconds = collections.defaultdict(list)
        for k in range(n):
            params = {"seed": SEED + k, "self_check": k_redraws}
            rng = np.random.default_rng(SEED + 1000 + k)
            for count, name in ((1, "one"), (2, "two")):
                ok, _, took = judge_t2i(pipeline, rng, count, params)
                passed[name] += ok
                seconds["t2i"].append(took)
            start = time.perf_counter()
            passed["edit"] += judge_edit(pipeline, rng, params).ok
            seconds["edit"].append(time.perf_counter() - start)
        times = ", ".join(f"{key} {statistics.median(v):.2f} s median {statistics.mean(v):.2f} "
                          f"mean" for key, v in seconds.items())
        print(f"self_check {k_redraws}: one object {passed['one']}/{n}, two objects "
              f"{passed['two']}/{n}, edits {passed['edit']}/{n}; {times}")


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    redraws = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    as_judge(pipeline, n)
    as_fix(pipeline, n, redraws)


if __name__ == "__main__":
    main()
