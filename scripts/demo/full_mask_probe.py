"""How well a demo model places objects before anything is drawn: for held-out one-object
captions, one forward with the whole canvas masked (no CFG), then over the object's cells: how
often the argmax is not the background code, and the mean probability of the right code; over
background cells: how often the argmax is the background.

    .venv/bin/python scripts/demo/full_mask_probe.py [MODEL_DIR] [N]
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from masked_canvas import fully_masked  # noqa: E402

from app.demo import world  # noqa: E402
from app.demo.data import background_code  # noqa: E402
from app.demo.evaluate import EVAL_SEED  # noqa: E402
from app.demo.train import load_with_prompts  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    torch.set_num_threads(2)
    model, tokenizer, codec, prompts = load_with_prompts(folder)
    first, last = prompts.ids.image_offset, prompts.ids.image_offset + codec.num_codes
    rng = np.random.default_rng(EVAL_SEED)
    object_hits = object_total = background_hits = background_total = 0
    p_true = []
    for _ in range(n):
        scene = world.sample_scene(rng, n_objects=1)
        layout = prompts.text_to_image(world.caption(scene), 16, 16)
        codes = codec.encode(world.render(scene)).reshape(-1)
        ids, attention = fully_masked(prompts, layout, len(codes))
        with torch.no_grad():
            probs = model(ids, attention)[0, len(layout.prefix):, first:last].softmax(-1)
        argmax = probs.argmax(-1).numpy()
        background = background_code(codes)
        on_object = codes != background
        object_hits += int((argmax[on_object] != background).sum())
        object_total += int(on_object.sum())
        background_hits += int((argmax[~on_object] == background).sum())
        background_total += int((~on_object).sum())
        right = probs[torch.from_numpy(on_object)].gather(
            1, torch.from_numpy(codes[on_object])[:, None])
        p_true.append(right.mean().item())
    print(f"{folder}: object cells predicted non-background {object_hits / object_total:.3f}, "
          f"mean p(right code) on object cells {np.mean(p_true):.3f}, "
          f"background cells right {background_hits / background_total:.3f}")


if __name__ == "__main__":
    main()
