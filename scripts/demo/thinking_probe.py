"""Does a demo model's thinking keep a prompt's stated place, and does the rest of the caption
help or hurt? For held-out one-object prompts that state a place, one forward over the thinking
answer (the caption, eos-padded to 32 tokens) with (a) only the place token masked, the rest of
the right caption given, and (b) the whole answer masked; how often the argmax at the place's
slot is the stated place, and its mean probability. (b) is what a one-step decode reads.

    .venv/bin/python scripts/demo/thinking_probe.py [MODEL_DIR] [N]
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.data import ANSWER_LENGTH, BLOCK_LENGTH  # noqa: E402
from app.demo.train import load_with_prompts  # noqa: E402
from app.engine.generate import segment_mask  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402

PROBE_SEED = 99  # not EVAL_SEED: its own held-out draws


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    torch.set_num_threads(2)
    model, tokenizer, codec, prompts = load_with_prompts(folder)
    mask, eos = prompts.ids.mask, prompts.ids.eos
    rng = np.random.default_rng(PROBE_SEED)
    scores: dict[str, list[tuple[float, bool]]] = {"place alone masked": [], "all masked": []}
    while len(scores["all masked"]) < n:
        scene = world.sample_scene(rng, n_objects=1)
        prompt = world.sample_prompt(scene, rng)
        if " at the " not in prompt:
            continue
        head = prompts.thinking_prompt(prompt)
        caption = prompts.text(world.caption(scene))
        place = tokenizer.token_to_id(scene.objects[0].position)
        slot = caption.index(place)
        for name, answer in scores.items():
            ids = caption + [eos] * (ANSWER_LENGTH - len(caption))
            ids = [mask] * ANSWER_LENGTH if name == "all masked" else \
                ids[:slot] + [mask] + ids[slot + 1:]
            row = torch.tensor([head + ids])
            # LLaDA2's block-causal mask, as in training (data.py) and text decoding (generate.py)
            segments = torch.arange(row.shape[1]) // BLOCK_LENGTH
            attention = segment_mask(segments, torch.ones_like(row, dtype=torch.bool), 0,
                                     row.shape[1])
            with torch.no_grad():
                probs = model(row, attention, None)[0, len(head) + slot].softmax(-1)
            answer.append((probs[place].item(), int(probs.argmax()) == place))
    for name, answer in scores.items():
        right = sum(ok for _, ok in answer)
        print(f"{name:20} stated place is the argmax {right}/{n}, mean probability "
              f"{np.mean([p for p, _ in answer]):.2f}")


if __name__ == "__main__":
    main()
