"""Where text-to-image fails: prompts with and without a stated position, one and two objects,
with thinking mode on and off; in thinking mode also whether the thinking itself satisfies the
prompt and whether the picture matches the thinking. Held-out prompts (from EVAL_SEED + 5, so
not the draws of `unmask eval`), judged by the scene parser like `unmask eval`.

    .venv/bin/python scripts/demo/t2i_breakdown.py MODEL_DIR N
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.evaluate import EVAL_SEED  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402


def scene_of_caption(text: str) -> world.Scene | None:
    """The scene a full caption describes, or None if it leaves something out or is impossible
    (two objects in one cell, an object the background's colour)."""
    stated = world.parse_prompt(text)
    objects = []
    for c in stated.objects:
        if None in (c.shape, c.color, c.size, c.position):
            return None
        objects.append(world.Obj(c.shape, c.color, c.size, c.position))
    if stated.background is None or not objects:
        return None
    scene = world.Scene(stated.background, tuple(objects))
    return scene if world.is_valid_scene(scene) else None


def main() -> None:
    pipeline = Pipeline.load(sys.argv[1])
    n = int(sys.argv[2])
    for thinking in (True, False):
        rng = np.random.default_rng(EVAL_SEED + 5)
        rows: dict[str, list[int]] = {}
        start = time.perf_counter()
        for i in range(n):
            for count in (1, 2):
                scene = world.sample_scene(rng, n_objects=count)
                prompt = world.sample_prompt(scene, rng)
                key = f"{count} object{'s' if count > 1 else ''}, position " + (
                    "stated" if "at the" in prompt else "open")
                result = pipeline.run(JobSpec("generate", prompt, params={
                    "seed": EVAL_SEED + i, "thinking": thinking}))
                parsed = world.parse_image(result.image)
                ok = parsed is not None and world.satisfies(parsed, world.parse_prompt(prompt))
                row = rows.setdefault(key, [0, 0, 0, 0, 0])
                row[0] += ok
                row[1] += 1
                row[2] += parsed is None
                if thinking:
                    described = scene_of_caption(result.thinking or "")
                    row[3] += described is not None and world.satisfies(
                        described, world.parse_prompt(prompt))
                    row[4] += described is not None and parsed == described
        print(f"thinking {'on' if thinking else 'off'} ({time.perf_counter() - start:.0f} s)")
        for key, (ok, total, unread, thought_ok, drawn_ok) in sorted(rows.items()):
            extra = (f"; thinking satisfies the prompt {thought_ok}/{total}, picture matches "
                     f"the thinking {drawn_ok}/{total}") if thinking else ""
            print(f"  {key}: {ok}/{total} right, {unread} unreadable{extra}", flush=True)


if __name__ == "__main__":
    main()
