"""Text-to-image adherence or instruction-edit success of a demo model under sampling-parameter
variants, judged like `unmask eval` (the scene parser). Held-out draws from their own seeds
(EVAL_SEED for text to image, EVAL_SEED + 11 for edits), so not those of `unmask eval`.

    .venv/bin/python scripts/demo/sweep.py t2i MODEL_DIR N '{"cfg": 5.0}' '{"image_steps": 32}'
    .venv/bin/python scripts/demo/sweep.py edit MODEL_DIR N '{}' '{"cfg": 4.0}'
"""

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo.evaluate import EVAL_SEED, judge_edit, judge_t2i  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402


def t2i_variant(pipeline, n: int, params: dict) -> str:
    rng = np.random.default_rng(EVAL_SEED)
    passed = {1: 0, 2: 0}
    for i in range(n):
        for count in (1, 2):
            passed[count] += judge_t2i(pipeline, rng, count, {**params, "seed": EVAL_SEED + i})[0]
    return f"one object {passed[1]}/{n}, two objects {passed[2]}/{n}"


def edit_variant(pipeline, n: int, params: dict) -> str:
    rng = np.random.default_rng(EVAL_SEED + 11)
    passed, unreadable, by_verb = 0, 0, Counter()
    for i in range(n):
        edit = judge_edit(pipeline, rng, {**params, "seed": EVAL_SEED + i})
        passed += edit.ok
        unreadable += edit.parsed is None
        by_verb[(edit.instruction.split()[0], edit.ok)] += 1
    verbs = ", ".join(f"{v} {by_verb[(v, True)]}/{by_verb[(v, True)] + by_verb[(v, False)]}"
                      for v in sorted({v for v, _ in by_verb}))
    return f"{passed}/{n} right, {unreadable} unreadable ({verbs})"


def main() -> None:
    run = {"t2i": t2i_variant, "edit": edit_variant}[sys.argv[1]]
    pipeline = Pipeline.load(sys.argv[2])
    n = int(sys.argv[3])
    for variant in sys.argv[4:] or ["{}"]:
        start = time.perf_counter()
        outcome = run(pipeline, n, json.loads(variant))
        print(f"{variant}: {outcome} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
