"""Whether a demo model copies the source in an edit: for held-out edits, one forward with the
whole output canvas masked (no CFG); per edit kind, how often the argmax is the target code on
cells the edit keeps, on kept cells that belong to an object (not the source's most common code,
the background), and on cells the edit changes. "head" is the same figure for kept object cells
read straight from the copy head (app/demo/copy_head.py: layer 2 head 0's own output through the
final norm and lm_head): what the head carries against what the model makes of it.

    .venv/bin/python scripts/demo/edit_copy_probe.py MODEL_DIR [N]
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.copy_head import COPY_LAYER, CopyHead, lm_readout  # noqa: E402
from app.demo.data import kept_object_cells  # noqa: E402
from app.demo.train import load_with_prompts  # noqa: E402

SEED = 5_000_001


def main() -> None:
    model, tokenizer, codec, prompts = load_with_prompts(Path(sys.argv[1]))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    offset, cells = prompts.ids.image_offset, (world.IMAGE_SIZE // world.PATCH_SIZE) ** 2
    head = CopyHead(model.model.layers[COPY_LAYER].attention, readout=lm_readout(model))
    rng = np.random.default_rng(SEED)
    scores: dict[str, list[list[float]]] = {}
    for _ in range(n):
        scene = world.sample_scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        source = codec.encode(world.render(scene))
        goal = codec.encode(world.render(target)).reshape(-1)
        prefix = prompts.edit(source, instruction).prefix
        with torch.no_grad():
            logits = model(torch.tensor([prefix + [prompts.ids.mask] * cells]))
        right = logits[0, len(prefix):, offset:offset + codec.num_codes].argmax(-1).numpy() == goal
        kept = source.reshape(-1) == goal
        objects = kept_object_cells(source.reshape(-1), goal)
        output = torch.zeros(1, len(prefix) + cells, dtype=torch.bool)
        output[0, len(prefix):] = True
        with torch.no_grad():
            carried = head.readout(head.carried(output))[:, offset:offset + codec.num_codes]
        head_right = carried.argmax(-1).numpy() == goal
        per_kind = scores.setdefault(instruction.split()[0], [[], [], [], []])
        for where, hits, values in zip((kept, objects, ~kept, objects),
                                       (right, right, right, head_right), per_kind, strict=True):
            if where.any():
                values.append(float(hits[where].mean()))
    head.remove()
    for kind, (kept, objects, changed, carried) in scores.items():
        print(f"{kind:8} edits {len(kept):2}  kept cells {np.mean(kept):.2f}  kept object cells "
              f"{_mean(objects)}  changed cells {_mean(changed)}  head {_mean(carried)}")


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.2f}" if values else " nan"


if __name__ == "__main__":
    main()
