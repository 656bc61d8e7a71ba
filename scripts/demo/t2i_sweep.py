"""Text-to-image adherence of a demo model under sampling-parameter variants: held-out prompts
(from EVAL_SEED, text-to-image only, so not the same draws as `unmask eval`), judged like
`unmask eval` judges them (app.demo.evaluate.judge_t2i).

    .venv/bin/python scripts/demo/t2i_sweep.py MODEL_DIR N '{"cfg": 5.0}' '{"image_steps": 32}'
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo.evaluate import EVAL_SEED, judge_t2i  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    for variant in sys.argv[3:] or ["{}"]:
        params = json.loads(variant)
        rng = np.random.default_rng(EVAL_SEED)
        passed = {1: 0, 2: 0}
        start = time.perf_counter()
        for i in range(n):
            for count in (1, 2):
                passed[count] += judge_t2i(pipeline, rng, count,
                                           {**params, "seed": EVAL_SEED + i})[0]
        print(f"{variant}: one object {passed[1]}/{n}, two objects {passed[2]}/{n} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
