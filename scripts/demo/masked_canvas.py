"""Shared by the diagnostic scripts: a text-to-image layout with every canvas cell masked, in the
canvas layout the demo model is trained and sampled with (the prefix one segment, the whole
canvas the next)."""

import torch

from app.engine.generate import segment_mask


def fully_masked(prompts, layout, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [1, S] (prefix + `cells` mask tokens) and their attention mask."""
    ids = torch.tensor([layout.prefix + [prompts.ids.mask] * cells])
    segments = (torch.arange(ids.shape[1]) >= len(layout.prefix)).long()
    return ids, segment_mask(segments, torch.ones_like(ids, dtype=torch.bool), 0, ids.shape[1])
