"""Where a fully masked canvas looks: one forward of a text-to-image prompt with every canvas cell
masked, and per layer and head the share of the canvas cells' attention that goes to the prompt
(the rest goes to the canvas itself), with the three prompt tokens that get the most.

    .venv/bin/python scripts/demo/canvas_attention.py [MODEL_DIR] [PROMPT]
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from masked_canvas import fully_masked  # noqa: E402

import app.engine.model as model_module  # noqa: E402
from app.demo.train import load_with_prompts  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402

SIDE = 16


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    prompt = sys.argv[2] if len(sys.argv) > 2 else \
        "a large red square at the top left on a blue background"
    torch.set_num_threads(2)
    model, tokenizer, codec, prompts = load_with_prompts(folder)
    weights = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, attn_mask=None, scale=None, enable_gqa=False):
        keys = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scores = (q @ keys.transpose(-1, -2)) * scale
        weights.append(scores.masked_fill(~attn_mask, float("-inf")).softmax(-1)[0])
        return sdpa(q, k, v, attn_mask=attn_mask, scale=scale, enable_gqa=enable_gqa)

    layout = prompts.text_to_image(prompt, SIDE, SIDE)
    ids, attention = fully_masked(prompts, layout, SIDE * SIDE)
    n = len(layout.prefix)
    model_module.F.scaled_dot_product_attention = recording_sdpa
    try:
        with torch.no_grad():
            model(ids, attention)
    finally:
        model_module.F.scaled_dot_product_attention = sdpa
    tokens = [tokenizer.id_to_token(i) for i in layout.prefix]
    print(f"{folder}: {prompt!r}")
    for layer, per_head in enumerate(weights):
        for head, w in enumerate(per_head):
            to_prompt = w[n:, :n]
            top = to_prompt.mean(0).topk(3)
            names = ", ".join(f"{tokens[i]} {v:.2f}" for v, i in
                              zip(top.values.tolist(), top.indices.tolist(), strict=True))
            print(f"layer {layer} head {head}: to the prompt {to_prompt.sum(-1).mean():.2f}"
                  f"  (most: {names})")


if __name__ == "__main__":
    main()
