"""Training examples for the demo model: every task of the world, laid out by the engine's own
prompt builder (app.engine.tasks), so training and inference share one token layout.

An example is a clean sequence plus which positions are free (to be noised and predicted) and
the attention segments: image outputs are one segment after the prefix (whole-canvas decoding),
text answers use LLaDA2 block-causal segments (col // block_length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.demo import world
from app.engine.tasks import PromptBuilder

TASK_MIX = {"generate": 0.35, "edit": 0.2, "inpaint": 0.15, "ask": 0.3}
ANSWER_LENGTH = 32  # gen_length of text answers; answers are padded with eos to this length
BLOCK_LENGTH = 32
UNCOND_RATE = 0.1  # prompt dropout for classifier-free guidance


@dataclass
class Example:
    ids: np.ndarray  # int64 [S], the clean sequence
    free: np.ndarray  # bool [S], positions the model learns to denoise
    segments: np.ndarray  # int64 [S]
    kind: str
    code_range: tuple[int, int]  # ids of the free positions' vocabulary (for random corruption)


class ExampleMaker:
    def __init__(self, prompts: PromptBuilder, codec, text_vocab: int):
        self.prompts, self.codec, self.text_vocab = prompts, codec, text_vocab
        self.offset = prompts.ids.image_offset
        self.side = world.IMAGE_SIZE // world.PATCH_SIZE

    def codes(self, scene: world.Scene) -> np.ndarray:
        return self.codec.encode(world.render(scene))

    def make(self, rng: np.random.Generator, kind: str | None = None) -> Example:
        if kind is None:
            kind = str(rng.choice(list(TASK_MIX), p=list(TASK_MIX.values())))
        return getattr(self, f"_{kind}")(rng)

    # ---- image outputs -------------------------------------------------------------------
    def _canvas(self, prefix: list[int], target: np.ndarray, free_cells: np.ndarray, kind: str):
        ids = np.array(prefix + (target.reshape(-1) + self.offset).tolist(), dtype=np.int64)
        free = np.zeros(len(ids), dtype=bool)
        free[len(prefix):] = free_cells.reshape(-1)
        segments = (np.arange(len(ids)) >= len(prefix)).astype(np.int64)
        span = (self.offset, self.offset + self.codec.num_codes)
        return Example(ids, free, segments, kind, span)

    def _prefix(self, layout, rng) -> list[int]:
        return layout.uncond_prefix if rng.random() < UNCOND_RATE else layout.prefix

    def _generate(self, rng) -> Example:
        scene = world.sample_scene(rng)
        layout = self.prompts.text_to_image(world.sample_prompt(scene, rng), self.side, self.side)
        all_cells = np.ones((self.side, self.side), dtype=bool)
        return self._canvas(self._prefix(layout, rng), self.codes(scene), all_cells, "generate")

    def _edit(self, rng) -> Example:
        scene = world.sample_scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        layout = self.prompts.edit(self.codes(scene), instruction)
        all_cells = np.ones((self.side, self.side), dtype=bool)
        return self._canvas(self._prefix(layout, rng), self.codes(target), all_cells, "edit")

    def _inpaint(self, rng) -> Example:
        example = world.sample_inpaint(world.sample_scene(rng, n_objects=1), rng)
        layout = self.prompts.inpaint(example.prompt, self.side, self.side)
        target = self.codes(example.target_scene)
        return self._canvas(self._prefix(layout, rng), target, example.cell_mask, "inpaint")

    # ---- text outputs --------------------------------------------------------------------
    def _ask(self, rng) -> Example:
        scene = world.sample_scene(rng)
        question, answer = world.sample_qa(scene, rng)
        prompt = self.prompts.understand([self.codes(scene)], question)
        answer_ids = self.prompts.text(answer) + [self.prompts.ids.eos]
        answer_ids += [self.prompts.ids.eos] * (ANSWER_LENGTH - len(answer_ids))
        ids = np.array(prompt + answer_ids[:ANSWER_LENGTH], dtype=np.int64)
        free = np.zeros(len(ids), dtype=bool)
        free[len(prompt):] = True
        segments = np.arange(len(ids)) // BLOCK_LENGTH
        return Example(ids, free, segments, "ask", (0, self.text_vocab))


@dataclass
class Batch:
    clean: torch.Tensor  # [B, S]
    noisy: torch.Tensor  # [B, S]
    loss_mask: torch.Tensor  # [B, S] bool: masked or corrupted free positions
    attention: torch.Tensor  # [B, 1, S, S] bool


def collate(
    examples: list[Example], mask_id: int, pad_id: int, rng: np.random.Generator,
    corrupt_rate: float = 0.1, mask_schedule: str = "uniform",
) -> Batch:
    """Masked-diffusion noise: each example draws a mask ratio t (uniform, or cosine), masks each
    free position with probability t, and swaps a few unmasked free positions for random tokens (to learn
    self-correction); the loss covers both."""
    length = max(len(e.ids) for e in examples)
    b = len(examples)
    clean = np.full((b, length), pad_id, dtype=np.int64)
    noisy = clean.copy()
    loss = np.zeros((b, length), dtype=bool)
    segments = np.full((b, length), 10**6, dtype=np.int64)
    valid = np.zeros((b, length), dtype=bool)
    for i, e in enumerate(examples):
        n = len(e.ids)
        clean[i, :n], segments[i, :n], valid[i, :n] = e.ids, e.segments, True
        t = rng.uniform(0.02, 1.0)
        if mask_schedule == "cosine":  # MaskGIT: more weight on heavily masked canvases
            t = max(0.02, float(np.cos(np.pi / 2 * rng.uniform(0.0, 1.0))))
        masked = e.free & (rng.random(n) < t)
        if not masked.any():  # every example teaches something
            masked[rng.choice(np.flatnonzero(e.free))] = True
        corrupt = e.free & ~masked & (rng.random(n) < corrupt_rate * t)
        row = e.ids.copy()
        row[masked] = mask_id
        row[corrupt] = rng.integers(e.code_range[0], e.code_range[1], size=int(corrupt.sum()))
        noisy[i, :n] = row
        loss[i, :n] = masked | corrupt
    seg = torch.from_numpy(segments)
    allowed = seg[:, None, :] <= seg[:, :, None]
    attention = (allowed & torch.from_numpy(valid)[:, None, :]).unsqueeze(1)
    return Batch(torch.from_numpy(clean), torch.from_numpy(noisy), torch.from_numpy(loss),
                 attention)
