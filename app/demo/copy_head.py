"""Auxiliary training signal for edits: one attention head learns to look, from every cell of the
output canvas, at the same cell of the source image.

An edit keeps most of the picture, so its canvas is mostly a copy of the source. In the spec's
edit layout (llada2_uni.md §4.5: source block, then the instruction, then the output header) the
distance between a source cell and its output cell depends on the instruction's length, so no
fixed RoPE offset finds it; a head has to match the two cells by their grid position, which every
image token knows after the position probe's layer (app/demo/position_probe.py). The demo model,
trained without help, never found that match: every edit came out unreadable, even "change the
background to blue", with the objects' colours in scattered fragments near the right places
(`scripts/demo/sweep.py edit`: 0/12 under every sampling setting tried).

Here head COPY_HEAD of layer COPY_LAYER gets a cross-entropy on its own attention distribution
(over every key the cell may see) towards the source cell with the output cell's index
(supervised attention, as in alignment-supervised translation). Training scaffolding like the
probes: nothing is added to the model, and the shipped folder is a plain llada2_moe.

Finding the cell is not enough: trained on the attention loss alone the head hit the right cell
100 % of the time, yet edits still did not copy (session 6 of issue 3), because nothing made the
head carry the source code it reads. The optional read-out loss does: the head's own share of the
attention output (its values through its slice of the output projection) goes straight through
the model's final norm and lm_head and must name the source cell's code (a direct-logit path, as
in logit-lens probing), so the residual stream holds the copied code where the model's own head
reads it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from app.demo.position_probe import IGNORE, grid_labels
from app.engine.model import apply_partial_rope

COPY_LAYER = 2  # reads the grid-position features the position probe puts after layer 1
COPY_HEAD = 0


def lm_readout(model: nn.Module):
    """hidden [N, H] -> logits [N, V] through the model's own final norm and lm_head: how the
    read-out turns the head's carried vector into codes."""
    return lambda hidden: model.lm_head(model.model.norm(hidden))


def copy_targets(clean: torch.Tensor, boi_id: int, side: int) -> torch.Tensor:
    """[B, S] for each cell of a row's output canvas (its last full canvas) the sequence index of
    the same cell of the row's first image, when the row holds two full canvases (a source and an
    output); IGNORE elsewhere. Canvases are found as the position probe finds them (grid_labels),
    in the canvas layout of collate, where sequence indices are position ids."""
    cells = side * side
    grid = grid_labels(clean, None, boi_id, side)
    targets = torch.full_like(grid, IGNORE)
    for row in range(clean.shape[0]):
        canvas = (grid[row] != IGNORE).nonzero().squeeze(-1)  # row-major cells, image by image
        if len(canvas) >= 2 * cells:
            targets[row, canvas[-cells:]] = canvas[:cells]
    return targets


class CopyHead:
    """Keeps head `head`'s attention logits of one Attention module during a forward (a forward
    hook that recomputes that head's query and keys from the module's own input)."""

    def __init__(self, attention: nn.Module, head: int = COPY_HEAD, readout=None):
        """readout: hidden [N, H] -> logits [N, V] (the model's final norm and lm_head); with it the
        hook also keeps the head's values and output columns for `carried`."""
        self.attention, self.head, self.readout = attention, head, readout
        self.scores: torch.Tensor | None = None  # [B, S, S] pre-softmax, masked
        self.values: torch.Tensor | None = None  # [B, S, hd] the head's key group's values
        self.columns: torch.Tensor | None = None  # [H, hd] its slice of the output projection
        self.active = True  # off: the forward keeps nothing (a batch without edits)
        self.handle = attention.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self.scores = self.values = self.columns = None
        if not self.active:
            return
        x, cos, sin, mask = args[:4]
        b, s, _ = x.shape
        nh, nkv, hd = module.nh, module.nkv, module.hd
        qkv = module.query_key_value(x).view(b, s, nh + 2 * nkv, hd).transpose(1, 2)
        q = qkv[:, self.head: self.head + 1]
        kv_head = self.head // (nh // nkv)  # grouped-query attention: the head's key group
        k = qkv[:, nh + kv_head: nh + kv_head + 1]
        if module.query_layernorm is not None:
            q, k = module.query_layernorm(q), module.key_layernorm(k)
        q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
        scores = (q @ k.transpose(-1, -2))[:, 0].float() * hd**-0.5
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask[:, 0], float("-inf"))
            else:
                scores = scores + mask[:, 0].float()
        self.scores = scores
        if self.readout is not None:
            self.values = qkv[:, nh + nkv + kv_head]
            self.columns = module.dense.weight[:, self.head * hd: (self.head + 1) * hd]

    def loss(self, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of the kept attention towards `targets` (copy_targets), and how often the
        head's strongest key is the target."""
        keep = targets != IGNORE
        if self.scores is None or not keep.any():  # no edit in the batch: nothing to learn
            return torch.zeros(()), 0.0
        scores = self.scores[keep]
        loss = F.cross_entropy(scores, targets[keep])
        hit = (scores.argmax(-1) == targets[keep]).float().mean()
        return loss, float(hit)

    def carried(self, keep: torch.Tensor) -> torch.Tensor:
        """[N, H] the head's share of the attention output at the positions `keep` ([B, S] bool)
        marks. Only those rows go through the softmax: a padding row masked everywhere would be
        NaN there and, through its backward, poison the gradients."""
        rows = keep.nonzero()[:, 0]
        mixed = self.scores[keep].softmax(-1).to(self.values.dtype).unsqueeze(1)
        return (mixed @ self.values[rows]).squeeze(1) @ self.columns.T

    def readout_loss(self, targets: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of the head's carried vector, read out as logits, towards the code of the
        source cell each output cell copies from (`clean` at `targets`), and how often the read-out
        names it on object cells (not the row's most common code)."""
        keep = targets != IGNORE
        if self.values is None or not keep.any():
            return torch.zeros(()), 0.0
        rows = keep.nonzero()[:, 0]
        codes = clean[rows, targets[keep]]
        logits = self.readout(self.carried(keep)).float()
        per_cell = F.cross_entropy(logits, codes, reduction="none")
        # Background and object cells weigh half each: ~85 % of a canvas is background, and a
        # plain mean let the head carry only the background (object cells read out 0-9 %).
        objects = codes != _row_background(codes, rows)
        halves = [part for part in (per_cell[objects], per_cell[~objects]) if len(part)]
        loss = sum(part.mean() for part in halves) / len(halves)
        right = logits.argmax(-1) == codes
        return loss, float(right[objects].float().mean()) if objects.any() else 0.0

    def remove(self) -> None:
        self.handle.remove()


def _row_background(codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """For each entry the most common code among its row's entries (the background's code)."""
    background = torch.empty_like(codes)
    for row in rows.unique():
        here = rows == row
        background[here] = codes[here].mode().values
    return background
