"""Answer thinking's text step alone: answers from TRUE descriptions (the caption of the scene),
by question kind (world.QA_KINDS), text only (seconds). Then the swap test: on two-object scenes
with two shapes and two colours, "what color is the {shape}" asked about each object; a model
that ignores the question's shape word names the same object's colour both times.

    .venv/bin/python scripts/demo/answer_probe.py MODEL_DIR N      # N scenes per kind
"""

import collections
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402

SEED = 2_000_017


def answer(pipeline: Pipeline, question: str, scene: world.Scene) -> str:
    prompts, params = pipeline.prompts, {**pipeline.defaults, "seed": 0}
    prompt = prompts.answer_from_description(question, prompts.text(world.caption(scene)))
    # The pipeline's own text loop, after the step that would write the description.
    tokens = pipeline._write_text(prompt, params, None, None, steps=int(params["text_steps"]),
                                  length=int(params["gen_length"]),
                                  temperature=float(params["text_temperature"]))
    return prompts.decode_text(tokens.tolist())


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    rng = np.random.default_rng(SEED)
    right, asked = collections.Counter(), collections.Counter()
    wrong = collections.defaultdict(list)
    with torch.no_grad():
        for _, kind, scene, question, truth in world.questions_by_kind(rng, n):
            got = answer(pipeline, question, scene)
            asked[kind] += 1
            right[kind] += got == truth
            if got != truth and len(wrong[kind]) < 2:
                wrong[kind].append(f"{question!r}: {got!r} != {truth!r} "
                                   f"[{world.caption(scene)}]")
        print("\n".join(f"{kind:18} {right[kind]}/{asked[kind]}" + "".join(
            "\n    " + line for line in wrong[kind]) for kind in world.QA_KINDS))
        print(f"{'all':18} {sum(right.values())}/{sum(asked.values())}")
        named = collections.Counter()
        while sum(named.values()) < 2 * n:
            scene = world.sample_scene(rng, n_objects=2)
            a, b = scene.objects
            if a.shape == b.shape or a.color == b.color:
                continue
            for obj in (a, b):
                got = answer(pipeline, f"What color is the {obj.shape}?", scene)
                named["asked one" if got == obj.color else "other one" if got in
                      (a.color, b.color) else "neither"] += 1
        print("swap test, whose colour: " + ", ".join(f"{k} {v}" for k, v in named.items()))


if __name__ == "__main__":
    main()
