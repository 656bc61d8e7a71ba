"""What a fully masked canvas knows, layer by layer: linear read-outs trained on a frozen demo
model's hidden states of the canvas cells, for held-out-style one-object captions with every
attribute stated. Read-outs: the cell's row third and column third (where am I), the prompt's
object colour (did I read the prompt), and the binding label (the object's colour if the object's
3x3 place is mine, else "none"; its chance level is printed).

    .venv/bin/python scripts/demo/canvas_readout.py [MODEL_DIR] [TRAIN_BATCHES]
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from masked_canvas import fully_masked  # noqa: E402

from app.demo import world  # noqa: E402
from app.demo.position_probe import LayerOutput  # noqa: E402
from app.demo.train import load_with_prompts  # noqa: E402
from app.paths import DEFAULT_MODEL  # noqa: E402

SIDE, BATCH = 16, 12
CELL = np.arange(SIDE * SIDE)
ROW_THIRD, COL_THIRD = CELL // SIDE * 3 // SIDE, CELL % SIDE * 3 // SIDE  # world's 3x3 spans
READOUTS = {"row third": 3, "column third": 3, "prompt colour": 8, "binding": 9}


def batch(model, prompts, hooks, rng):
    """Hidden states [layers][B*256, H] of fully masked canvases and labels [B*256, 4]."""
    feats, labels = [[] for _ in hooks], []
    for _ in range(BATCH):
        scene = world.sample_scene(rng, n_objects=1)
        obj = scene.objects[0]
        layout = prompts.text_to_image(world.caption(scene), SIDE, SIDE)
        ids, attention = fully_masked(prompts, layout, SIDE * SIDE)
        with torch.no_grad():
            model(ids, attention)
        for layer, hook in enumerate(hooks):
            feats[layer].append(hook.value[0, len(layout.prefix):])
        colour = world.COLORS.index(obj.color)
        mine = world.POSITIONS.index(obj.position) == ROW_THIRD * 3 + COL_THIRD
        labels.append(np.stack([ROW_THIRD, COL_THIRD, np.full(len(CELL), colour),
                                np.where(mine, colour, 8)], 1))
    return [torch.cat(f) for f in feats], torch.from_numpy(np.concatenate(labels))


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model, tokenizer, codec, prompts = load_with_prompts(folder)
    hooks = [LayerOutput(layer) for layer in model.model.layers]
    heads = [[nn.Linear(model.config.hidden_size, n) for n in READOUTS.values()] for _ in hooks]
    optims = [torch.optim.Adam([p for h in layer for p in h.parameters()], 3e-3) for layer in heads]
    rng = np.random.default_rng(3)
    for _ in range(steps):
        feats, labels = batch(model, prompts, hooks, rng)
        for layer, optim in enumerate(optims):
            loss = sum(F.cross_entropy(head(feats[layer]), labels[:, j])
                       for j, head in enumerate(heads[layer]))
            optim.zero_grad()
            loss.backward()
            optim.step()
    hits = np.zeros((len(hooks), len(READOUTS)))
    none_share = []
    for _ in range(5):  # fresh scenes for the score
        feats, labels = batch(model, prompts, hooks, rng)
        none_share.append(float((labels[:, 3] == 8).float().mean()))
        for layer in range(len(hooks)):
            for j, head in enumerate(heads[layer]):
                hits[layer, j] += float((head(feats[layer]).argmax(-1) == labels[:, j])
                                        .float().mean()) / 5
    print(f"{folder}: read-out accuracy (%) of fully masked canvas cells, after each layer")
    print("layer  " + "  ".join(f"{name:>13s}" for name in READOUTS))
    for layer, row in enumerate(hits):
        print(f"{layer:5d}  " + "  ".join(f"{100 * v:13.1f}" for v in row))
    print(f"binding by always saying 'none': {100 * np.mean(none_share):.1f} %")


if __name__ == "__main__":
    main()
