"""Auxiliary training signal: every output-canvas cell names the object whose place it is in.

The scene probe (app/demo/scene_probe.py) made every cell know the whole scene, and the position
probe where the cell is. With two objects that is not enough: the demo model drew both objects
in the right places but each in a mix of both colours (`unmask generate "a large red circle at
the top left and a small blue square at the bottom right on a white background"`: a red-blue
blob at the top left and a blue-red one at the bottom right). A cell must also pick *its*
object out of the scene, which means comparing each object's position with its own.

After layer BINDING_PROBE_LAYER each cell of an output canvas must linearly encode the colour,
shape and size of the object whose 3x3 place (world.CELL_SPANS) holds the cell, or "none" when
that place is empty. Labelled only where the prompt fixes it: every object's position stated
(thinking-mode drawings, edits' results, inpainting, prompts that state positions). Training
scaffolding like the other probes, dropped on save.
"""

from __future__ import annotations

import numpy as np

from app.demo import world
from app.demo.position_probe import IGNORE
from app.demo.scene_probe import SlotProbe

BINDING_PROBE_LAYER = 2  # above the scene and position probes (layer 1), which it combines
# colour (+ none), shape (+ none), size (+ none) of the object whose place holds the cell
BINDING_CLASSES: tuple[int, ...] = (len(world.COLORS) + 1, len(world.SHAPES) + 1,
                                    len(world.SIZES) + 1)
NUM_BINDING_SLOTS = len(BINDING_CLASSES)
_ATTRS = (("color", world.COLORS), ("shape", world.SHAPES), ("size", world.SIZES))


def _place_of_cells(side: int) -> np.ndarray:
    """[side * side] index into world.POSITIONS of the 3x3 place holding each grid cell."""
    patch = world.IMAGE_SIZE // side
    starts = np.arange(side) * patch
    third = np.array([next(i for i, (a, b) in enumerate(world.CELL_SPANS) if a <= p < b)
                      for p in starts])
    return (third[:, None] * 3 + third[None, :]).reshape(-1)


def binding_labels(scene: world.Scene, stated: world.Constraints | None, side: int) -> np.ndarray:
    """[side * side, NUM_BINDING_SLOTS] labels of one canvas. `stated`: what the prompt states
    (None: the whole scene is known); unless every object's position is stated, which object a
    cell belongs to is open, so everything is IGNORE. An attribute the prompt leaves open is
    IGNORE on the object's cells; empty places are "none" in every slot."""
    labels = np.full((side * side, NUM_BINDING_SLOTS), IGNORE, dtype=np.int64)
    if stated is not None and (len(stated.objects) != len(scene.objects) or any(
            c.position is None for c in stated.objects)):
        return labels
    places = _place_of_cells(side)
    labels[:] = [len(values) for _, values in _ATTRS]  # "none"
    for obj in scene.objects:
        cells = places == world.POSITIONS.index(obj.position)
        want = None if stated is None else next(
            c for c in stated.objects if c.position == obj.position)
        for j, (attr, values) in enumerate(_ATTRS):
            known = want is None or getattr(want, attr) is not None
            labels[cells, j] = values.index(getattr(obj, attr)) if known else IGNORE
    return labels


class BindingProbe(SlotProbe):
    def __init__(self, hidden_size: int):
        super().__init__(hidden_size, BINDING_CLASSES)
