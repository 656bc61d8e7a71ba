"""Auxiliary training signal: every image cell's row and column, read from an early layer.

A masked image cell holds the same mask token everywhere, and RoPE only ever tells attention the
*distance* between two tokens (spec §3.3.4), so a cell can only learn where it is in the 16x16 grid
by attending to the image header around it (`<boi>`) and turning that distance into features. A
big model discovers this on its own; the demo model, trained for an hour on two cores, mostly did
not (it painted the background everywhere, having no idea which cells the prompt's "top left"
meant). This probe asks a linear read-out of the hidden state after layer PROBE_LAYER to name each
cell's row and column, which makes those features appear in a few hundred steps. It is training
scaffolding only: the shipped model is a plain llada2_moe; the probe is dropped when saving.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PROBE_LAYER = 1  # after two decoder layers: one to find <boi>, one to refine
IGNORE = -100


def grid_labels(clean: torch.Tensor, positions: torch.Tensor | None, boi_id: int,
                side: int) -> torch.Tensor:
    """[B, S] cell index (row * side + col) of each image-canvas token, IGNORE elsewhere.

    A canvas is the side*side positions after each `<boi>` (spec §4.2: header then row-major
    codes). Positions are position ids, so the clean copies of collate_blocks, which repeat the
    canvas positions, get the same labels as the noisy canvas."""
    b, s = clean.shape
    if positions is None:
        positions = torch.arange(s).expand(b, -1)
    labels = torch.full((b, s), IGNORE, dtype=torch.long)
    rows, cols = (clean == boi_id).nonzero(as_tuple=True)
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        index = positions[row] - positions[row, col] - 1
        inside = (index >= 0) & (index < side * side)
        if int(inside.sum()) < side * side:  # no canvas follows: a thinking answer's header
            continue
        labels[row, inside] = index[inside]
    return labels


class PositionProbe(nn.Module):
    def __init__(self, hidden_size: int, side: int):
        super().__init__()
        self.side = side
        self.read = nn.Linear(hidden_size, 2 * side)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of row and column (mean of the two) and how often the 3x3 grid cell
        (ShapesWorld's positions) read from them is right."""
        keep = labels != IGNORE
        if not keep.any():  # a batch without images (thinking text)
            return hidden.sum() * 0.0, 0.0
        logits = self.read(hidden[keep]).float()
        row, col = labels[keep] // self.side, labels[keep] % self.side
        row_logits, col_logits = logits[:, : self.side], logits[:, self.side:]
        loss = 0.5 * (F.cross_entropy(row_logits, row) + F.cross_entropy(col_logits, col))
        with torch.no_grad():
            third = self.side / 3
            hit = (((row_logits.argmax(-1) / third).floor() == (row / third).floor())
                   & ((col_logits.argmax(-1) / third).floor() == (col / third).floor()))
        return loss, float(hit.float().mean()) if len(hit) else 0.0


class LayerOutput:
    """Keeps the output of one module during a forward (a forward hook)."""

    def __init__(self, module: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self.value = output

    def remove(self) -> None:
        self.handle.remove()
