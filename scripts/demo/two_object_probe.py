"""Where two-object drawing breaks, in three parts, on held-out two-object scenes:

1. thinking: the one-step phase-1 caption keeps every attribute the prompt states;
2. drawing given the right thinking: the scene's true caption stands in for phase 1, and the
   picture (today's sampling defaults) must read back as exactly that scene;
3. binding with everything masked: one forward over a fully masked canvas after the true
   caption; of the cells that hold an object's colour, how many predict that object's colour,
   the other object's, or background (scenes with two different object colours).

    .venv/bin/python scripts/demo/two_object_probe.py [MODEL_DIR] [N]
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from masked_canvas import fully_masked  # noqa: E402
from t2i_breakdown import scene_of_caption  # noqa: E402

from app.demo import world  # noqa: E402
from app.engine.jobs import JobSpec  # noqa: E402
from app.engine.pipeline import Pipeline  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402

PROBE_SEED = 1207  # its own held-out draws, not those of `unmask eval`


class TrueThinking(Pipeline):
    """Phase 1 replaced by a given caption (`given`), so phase 2 is judged on its own; with
    none given, the model's own thinking."""

    given = ""

    def _think(self, prompt, params, on_step, should_cancel, **kwargs):
        if not self.given:
            return super()._think(prompt, params, on_step, should_cancel, **kwargs)
        return self.prompts.text(self.given), self.given


def colours_of_cells(codec, grid: np.ndarray) -> np.ndarray:
    """bool [cells, colours]: which palette colours each cell's decoded 4x4 patch contains."""
    side = grid.shape[0]
    labels = world.snap_to_palette(codec.decode(grid))  # [H, W] index into world.COLORS
    patch = labels.shape[0] // side
    cells = labels.reshape(side, patch, side, patch).transpose(0, 2, 1, 3)
    cells = cells.reshape(side * side, patch * patch)
    return np.stack([(cells == k).any(1) for k in range(len(world.COLORS))], axis=1)


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    torch.set_num_threads(2)
    pipeline = TrueThinking.load(folder)
    model, codec, prompts = pipeline.model, pipeline.codec, pipeline.prompts
    side = codec.image_size // codec.patch_size
    first = prompts.ids.image_offset
    rng = np.random.default_rng(PROBE_SEED)
    thought_ok = drawn_ok = 0
    binding = {"own": 0, "other": 0, "background": 0, "else": 0}
    for i in range(n):
        scene = world.sample_scene(rng, n_objects=2)
        prompt = world.sample_prompt(scene, rng)
        stated = world.parse_prompt(prompt)
        params = {**pipeline.defaults, "seed": i}
        _, thought = Pipeline._think(pipeline, prompts.thinking_prompt(prompt), params, None,
                                     None)
        described = scene_of_caption(thought)
        thought_ok += described is not None and world.satisfies(described, stated)

        pipeline.given = world.caption(scene)
        result = pipeline.run(JobSpec("generate", prompt, params={"seed": i, "thinking": True}))
        drawn_ok += world.parse_image(result.image) == scene

        colours = [world.COLORS.index(o.color) for o in scene.objects]
        if colours[0] == colours[1]:
            continue
        layout = prompts.thinking_to_image(prompt, prompts.text(pipeline.given), side, side)
        ids, attention = fully_masked(prompts, layout, side * side)
        with torch.no_grad():
            logits = model(ids, attention)[0, len(layout.prefix):]
        predicted = logits[:, first:first + codec.num_codes].argmax(-1).numpy()
        truth = colours_of_cells(codec, codec.encode(world.render(scene)))
        guess = colours_of_cells(codec, predicted.reshape(side, side))
        background = world.COLORS.index(scene.background)
        for own, other in (colours, colours[::-1]):
            for cell in np.nonzero(truth[:, own])[0]:
                key = ("own" if guess[cell, own] else "other" if guess[cell, other]
                       else "background" if guess[cell].sum() == guess[cell, background]
                       else "else")
                binding[key] += 1
    total = sum(binding.values())
    print(f"{folder}, {n} two-object scenes:")
    print(f"  thinking keeps the prompt: {thought_ok}/{n}")
    print(f"  drawing given the right thinking: {drawn_ok}/{n} exactly that scene")
    print("  everything masked, object-colour cells predict: " + ", ".join(
        f"{k} {v / max(total, 1):.2f}" for k, v in binding.items()) + f" ({total} cells)")


if __name__ == "__main__":
    main()
