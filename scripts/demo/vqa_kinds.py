"""VQA exact match of a demo model by question kind (world.QA_KINDS), on held-out scenes drawn
from their own seed (not those of `unmask eval`); a few wrong answers per kind with the scene,
and the answers a yes/no or count question got (a model that answers one word whatever the
picture scores about half on them).

    .venv/bin/python scripts/demo/vqa_kinds.py MODEL_DIR N      # N scenes per kind
    .venv/bin/python scripts/demo/vqa_kinds.py MODEL_DIR N '{"ask_thinking": false}'
"""

import collections
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

SEED = 2_000_017


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    rng = np.random.default_rng(SEED)
    right, asked = collections.Counter(), collections.Counter()
    wrong = collections.defaultdict(list)
    given = collections.defaultdict(collections.Counter)  # kind -> answer -> how often
    for i, kind, scene, question, answer in world.questions_by_kind(rng, n):
        result = pipeline.run(JobSpec("ask", question, images=[world.render(scene)],
                                      params={**params, "seed": i}))
        got = result.text
        asked[kind] += 1
        right[kind] += got == answer
        given[kind][got] += 1
        if got != answer and len(wrong[kind]) < 3:
            thought = "" if result.thinking is None else f" (thinking {result.thinking!r})"
            wrong[kind].append(f"{question!r}: {got!r} != {answer!r}{thought} "
                               f"[{world.caption(scene)}]")
    for kind in world.QA_KINDS:
        print(f"{kind:18} {right[kind]}/{asked[kind]}")
        for line in wrong[kind]:
            print("    " + line)
        if kind in ("is_there", "count"):
            print("    answers given: " + ", ".join(f"{a!r} {c}" for a, c in
                                                    given[kind].most_common()))
    print(f"{'all':18} {sum(right.values())}/{sum(asked.values())}")


if __name__ == "__main__":
    main()
