"""Whether a demo model copies the source in an edit: for held-out edits, one forward with the
whole output canvas masked (no CFG); per edit kind, how often the argmax is the target code on
cells the edit keeps, on kept cells that belong to an object (not the source's most common code,
the background), and on cells the edit changes.

    .venv/bin/python scripts/demo/edit_copy_probe.py MODEL_DIR [N]
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo import world  # noqa: E402
from app.demo.train import load_folder  # noqa: E402
from app.engine.tasks import PromptBuilder  # noqa: E402

SEED = 5_000_001


def main() -> None:
    model, tokenizer, codec = load_folder(Path(sys.argv[1]))
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    model.eval()
    prompts = PromptBuilder(tokenizer, model.config.extra, codec.num_codes,
                            model.config.vocab_size)
    offset, cells = prompts.ids.image_offset, (world.IMAGE_SIZE // world.PATCH_SIZE) ** 2
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
        flat = source.reshape(-1)
        kept = flat == goal
        objects = kept & (flat != np.bincount(flat).argmax())
        per_kind = scores.setdefault(instruction.split()[0], [[], [], []])
        for where, values in zip((kept, objects, ~kept), per_kind, strict=True):
            if where.any():
                values.append(float(right[where].mean()))
    for kind, (kept, objects, changed) in scores.items():
        print(f"{kind:8} edits {len(kept):2}  kept cells {np.mean(kept):.2f}  kept object cells "
              f"{np.mean(objects) if objects else float('nan'):.2f}  changed cells "
              f"{np.mean(changed) if changed else float('nan'):.2f}")


if __name__ == "__main__":
    main()
