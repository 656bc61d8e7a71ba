"""Self-check: does the model, reading its own picture, name the text it drew it from?

A unified model reads images as well as it draws them, so after drawing from a full description
(thinking mode's text, or edit thinking's rewritten description) the engine can ask the same
model to describe the picture and compare. `read_back` does it in one forward pass: the answer
slots after the describe prompt all masked, the target text scored at once (LLaDA2's
block-causal mask, spec §4, as a block-diffusion decode sees it in its first step). The picture
passes when every target token (and the eos after it) is the model's first choice, i.e. a
greedy one-step "Describe the image" answer would be the target word for word; the mean log
probability ranks pictures when none passes (for long free-form thinking, as the full
LLaDA2.0-Uni writes, an exact match is rare and the ranking is what counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from app.engine.generate import _Runner, build_rows


@dataclass(frozen=True)
class ReadBack:
    passed: bool  # every target token (and the eos after it) is the model's first choice
    score: float  # mean log probability of the target tokens and that eos
    tokens: list[int]  # the model's first choices over the target's span (what it read)


def read_back(model, prompt_ids: list[int], target_ids: list[int], *, mask_id: int,
              eos_id: int, block_length: int) -> ReadBack:
    """Score `target_ids` (then eos) as the answer to `prompt_ids`, all answer slots masked."""
    if not target_ids:
        raise ValueError("read_back needs a non-empty target text")
    expected = torch.tensor(list(target_ids) + [eos_id], device=model.device)
    prompt = torch.tensor(prompt_ids, device=model.device)
    p, n = prompt.numel(), expected.numel()
    total = math.ceil((p + n) / block_length) * block_length  # whole blocks, as a decode pads
    tail = torch.full((total - p,), mask_id, dtype=torch.long, device=model.device)
    rows = build_rows(prompt, tail, mask_id)
    segments = torch.arange(total, device=model.device) // block_length
    with torch.no_grad():
        logits = _Runner(model, rows, segments, use_cache=False).logits(p, p, p + n)[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen = logp.argmax(dim=-1)
    score = float(logp.gather(1, expected[:, None]).mean())
    return ReadBack(passed=bool((chosen == expected).all()), score=score,
                    tokens=[int(t) for t in chosen[:-1]])
