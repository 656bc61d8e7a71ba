"""Where edit thinking breaks, part by part, on held-out edits (the eval's own kind of draws):

1. describe: the model's description of the source is its true caption;
2. rewrite: from the *true* caption and the instruction, the edited caption is the target's;
3. draw: the target's true caption drawn as text to image after thinking reads back as the target;
4. end to end: `edit` with thinking on reads back as the target.

    .venv/bin/python scripts/demo/edit_thinking_probe.py [MODEL_DIR] [N]

Prints each part's count, then by edit kind, then the wrong descriptions and rewrites.
"""

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from two_object_probe import TrueThinking  # noqa: E402

from app.demo import world  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402

PROBE_SEED = 1311  # its own held-out draws, not those of `unmask eval`
PARTS = ("describe", "rewrite", "draw", "edit")


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    torch.set_num_threads(2)
    pipeline = TrueThinking.load(folder)  # its own thinking unless a caption is given
    prompts = pipeline.prompts
    rng = np.random.default_rng(PROBE_SEED)
    totals = defaultdict(int)
    by_kind = defaultdict(lambda: defaultdict(int))
    wrong_rewrites, wrong_descriptions = [], []
    for i in range(n):
        scene = world.sample_scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        kind = instruction.split()[0]
        params = {**pipeline.defaults, "seed": i}
        grid = pipeline.codec.encode(world.render(scene))
        _, description = pipeline._describe([grid], params, None, None)
        true_caption = prompts.text(world.caption(scene))
        _, rewrite = pipeline._think(prompts.rewrite_description(instruction, true_caption),
                                     params, None, None, stop_ids=())
        pipeline.given = world.caption(target)  # drawn after the true edited caption
        drawn = pipeline.run(JobSpec("generate", pipeline.given,
                                     params={"seed": i, "thinking": True}))
        pipeline.given = ""
        edited = pipeline.run(JobSpec("edit", instruction, images=[world.render(scene)],
                                      params={"seed": i, "edit_thinking": True}))
        right = {
            "describe": description == world.caption(scene),
            "rewrite": rewrite == world.caption(target),
            "draw": world.parse_image(drawn.image) == target,
            "edit": world.parse_image(edited.image) == target,
        }
        if not right["describe"]:
            wrong_descriptions.append(f"{world.caption(scene)!r}: {description!r}")
        if not right["rewrite"]:
            wrong_rewrites.append(f"{instruction!r} on {world.caption(scene)!r}: {rewrite!r}")
        by_kind[kind]["n"] += 1
        for part, ok in right.items():
            totals[part] += ok
            by_kind[kind][part] += ok
    print("  ".join(f"{part} {totals[part]}/{n}" for part in PARTS))
    for kind, counts in sorted(by_kind.items()):
        print(f"  {kind:12s} " + "  ".join(f"{p} {counts[p]}/{counts['n']}" for p in PARTS))
    print("wrong descriptions:")
    for line in wrong_descriptions:
        print("  " + line)
    print("wrong rewrites (from the true caption):")
    for line in wrong_rewrites:
        print("  " + line)


if __name__ == "__main__":
    main()
