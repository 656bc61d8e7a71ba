"""Can the demo's architecture learn to pick one of two objects by a word at all? A minimal
task on the demo model class (app.demo.train.ARCH, fresh weights): "colour1 shape1 and
colour2 shape2 ? shapeX [mask]" -> colourX, optionally after FILLER random tokens, loss on
the masked position only; held-out accuracy every 100 steps (one thread).

    .venv/bin/python scripts/demo/pick_synthetic.py FILLER STEPS LR     # e.g. 0 1500 1e-3
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.demo.train import ARCH, fresh_model  # noqa: E402
from app.engine.config import LLaDA2MoeConfig  # noqa: E402

VOCAB, PAD, MASK, ASK, AND = 64, 0, 1, 2, 3
COLOURS, SHAPES, FILLER = range(10, 18), range(20, 23), range(30, 60)
BATCH, HELD_OUT = 64, 512


def batch(rng: np.random.Generator, n: int, filler: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, answers = [], []
    for _ in range(n):
        colour = rng.choice(COLOURS, 2, replace=False)
        shape = rng.choice(SHAPES, 2, replace=False)
        k = int(rng.integers(2))
        lead = rng.choice(FILLER, filler).tolist()
        rows.append(lead + [int(colour[0]), int(shape[0]), AND, int(colour[1]), int(shape[1]),
                            ASK, int(shape[k]), MASK])
        answers.append(int(colour[k]))
    return torch.tensor(rows), torch.tensor(answers)


def main() -> None:
    filler, steps, lr = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = LLaDA2MoeConfig.from_dict({**ARCH, "vocab_size": VOCAB, "pad_token_id": PAD,
                                        "eos_token_id": PAD, "mask_token_id": MASK,
                                        "image_token_offset": VOCAB})
    model = fresh_model(config, 0)
    model.train().requires_grad_(True)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.98))
    rng = np.random.default_rng(0)
    held_x, held_y = batch(np.random.default_rng(1), HELD_OUT, filler)
    start = time.perf_counter()
    for step in range(steps):
        x, y = batch(rng, BATCH, filler)
        loss = F.cross_entropy(model(x)[:, -1].float(), y)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        if step % 100 == 0 or step == steps - 1:
            with torch.no_grad():
                model.eval()
                accuracy = (model(held_x)[:, -1].argmax(-1) == held_y).float().mean().item()
                model.train()
            print(f"step {step:5d}  loss {loss.item():.3f}  held-out {accuracy:.3f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
