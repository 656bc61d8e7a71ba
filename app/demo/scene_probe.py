"""Auxiliary training signal: every image cell names the whole scene its image shows or must show.

Measured on the model trained with the position probe only: with the canvas fully masked, a
linear read-out of the canvas cells' hidden states (any layer) named the prompt's object colour
for 30 % of cells and its place for hardly more than chance, and with an attention dump, the
canvas attended to its own mask tokens from layer 2 on. The cells had learned to read the
*background* colour from the prompt (needed by 90 % of them) and nothing else: to draw an object a
cell must know both the object's words and whether the object's place is its own, and learning
either half alone lowers the loss of almost no cell, so neither was learned.

This probe supplies the first half directly. After layer SCENE_PROBE_LAYER every cell of an
output canvas must linearly encode the scene the canvas must end up showing (background colour;
per object in reading order: colour or "none", shape, size, position), as far as the prompt states
it; the cells of a source image (edit and question prompts) encode the scene they show. Rendering
then only has to compare a slot's position with the cell's own (the position probe's job) in the
layers above. Like the position probe it is training scaffolding, dropped on save.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from app.demo import world
from app.demo.position_probe import IGNORE

SCENE_PROBE_LAYER = 1
NO_OBJECT = len(world.COLORS)  # the colour slot of an absent second object

# One classification per slot: background colour, then per object colour (+ none), shape, size,
# position.
SLOT_CLASSES: tuple[int, ...] = (len(world.COLORS),) + 2 * (
    len(world.COLORS) + 1, len(world.SHAPES), len(world.SIZES), len(world.POSITIONS))
NUM_SLOTS = len(SLOT_CLASSES)
# An object's slots in order, each with the world's list its class indexes.
_OBJECT_ATTRS = (("color", world.COLORS), ("shape", world.SHAPES), ("size", world.SIZES),
                 ("position", world.POSITIONS))


def scene_slots(scene: world.Scene, stated: world.Constraints | None = None) -> np.ndarray:
    """[NUM_SLOTS] class per slot. `stated`: only what a prompt states is labelled (objects in the
    prompt's order, which is the scene's reading order for world.sample_prompt); None = the whole
    scene is known (a source image, or an edit's result)."""
    labels = np.full(NUM_SLOTS, IGNORE, dtype=np.int64)
    if stated is None or stated.background is not None:
        labels[0] = world.COLORS.index(scene.background)
    for k in range(2):
        base = 1 + 4 * k
        if k >= len(scene.objects):
            labels[base] = NO_OBJECT
            continue
        obj = scene.objects[k]
        want = stated.objects[k] if stated is not None and k < len(stated.objects) else None
        for j, (attr, values) in enumerate(_OBJECT_ATTRS):
            if stated is None or (want is not None and getattr(want, attr) is not None):
                labels[base + j] = values.index(getattr(obj, attr))
    return labels


def label_images(ids: np.ndarray, boi_id: int, side: int,
                 scenes: list[np.ndarray | None]) -> np.ndarray:
    """[S, NUM_SLOTS] labels: the side*side cells after the i-th `<boi>` get scenes[i] (None:
    unlabelled), every other position IGNORE."""
    labels = np.full((len(ids), NUM_SLOTS), IGNORE, dtype=np.int64)
    starts = np.flatnonzero(ids == boi_id) + 1
    if len(starts) != len(scenes):
        raise ValueError(f"{len(starts)} images in the sequence but {len(scenes)} scenes given")
    for start, slots in zip(starts, scenes, strict=True):
        if slots is not None:
            labels[start:start + side * side] = slots
    return labels


class SlotProbe(nn.Module):
    """A linear read-out of several classifications ("slots") per position."""

    def __init__(self, hidden_size: int, classes: tuple[int, ...]):
        super().__init__()
        self.classes = classes
        self.read = nn.Linear(hidden_size, sum(classes))

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """hidden [B, S, H], labels [B, S, len(classes)]: mean cross-entropy over the labelled
        slots, and the fraction of labelled slots read right (0 and 0.0 when none is)."""
        keep = (labels != IGNORE).any(-1)
        if not keep.any():
            return hidden.sum() * 0.0, 0.0
        logits = self.read(hidden[keep]).float().split(list(self.classes), dim=-1)
        wanted = labels[keep]
        losses, hits, total = [], 0, 0
        for j, slot_logits in enumerate(logits):
            have = wanted[:, j] != IGNORE
            if have.any():
                losses.append(F.cross_entropy(slot_logits[have], wanted[have, j]))
                hits += int((slot_logits[have].argmax(-1) == wanted[have, j]).sum())
                total += int(have.sum())
        return torch.stack(losses).mean(), hits / total


class SceneProbe(SlotProbe):
    def __init__(self, hidden_size: int):
        super().__init__(hidden_size, SLOT_CLASSES)
