"""Denoising schedulers in the diffusers style: `set_timesteps`, then `step(logits, t, sequence)`.

- `BlockDiffusionScheduler`: one block of LLaDA2.0 `generate()` (../shared/spec/llada2_moe.md
  §5.2-5.4): per-step quota from block_length // steps, commit every masked position whose
  confidence beats `threshold` (strict >) if that meets the quota, else the top-quota by
  confidence; temperature 0 = argmax (the greedy fix of §5.4).
- `CanvasScheduler`: whole-canvas MaskGIT unmasking of a fixed set of free positions, cosine
  schedule, annealed Gumbel noise on the confidence that picks what to commit.

Both optionally self-correct: a committed token whose probability falls below
`remask_threshold` is re-masked, or replaced where another token beats `edit_threshold`.
The schedulers see one row of logits for their free positions; the loops in generate.py run the
model, apply CFG and token-range restriction, and build `Step` records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SchedulerOutput:
    prev_sample: torch.Tensor  # the tokens after this step (same shape as `sequence`)
    committed: torch.Tensor  # bool: newly committed this step
    confidence: torch.Tensor  # fp32: probability of the predicted (or kept) token per position
    revised: torch.Tensor  # bool: committed earlier, changed by self-correction this step


def restrict_logits(logits: torch.Tensor, token_range: tuple[int, int] | None) -> torch.Tensor:
    """Only ids in [lo, hi) can be sampled (image codes only when drawing)."""
    if token_range is None:
        return logits
    lo, hi = token_range
    out = torch.full_like(logits, float("-inf"))
    out[..., lo:hi] = logits[..., lo:hi]
    return out


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, V] fp32 -> (token [N], its probability [N]) per spec §5.4 with the greedy fix."""
    logits = logits.float()
    if temperature == 0:
        probs = logits.softmax(-1)
        token = logits.argmax(-1)
        return token, probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)
    if temperature != 1:
        logits = logits / temperature
    if top_k is not None and top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative > top_p
        drop[..., 1:] = drop[..., :-1].clone()  # keep the first entry that crosses p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return token, probs.gather(-1, token.unsqueeze(-1)).squeeze(-1)


def quota_schedule(block_length: int, steps: int) -> list[int]:
    """Tokens to commit at each step of a block (spec §5.2): base+1 for the first rem steps."""
    base, rem = divmod(block_length, steps)
    return [base + 1 if s < rem else base for s in range(steps)]


def _self_correct(
    logits: torch.Tensor,
    sequence: torch.Tensor,
    editable: torch.Tensor,
    mask_id: int,
    remask_threshold: float | None,
    edit_threshold: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-mask or replace committed tokens the model now doubts. Returns (tokens, revised, p_kept)."""
    probs = logits.float().softmax(-1)
    committed = editable & (sequence != mask_id)
    safe = torch.where(committed, sequence, torch.zeros_like(sequence))  # mask_id may be >= V
    kept_p = probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    best_p, best = probs.max(-1)
    tokens = sequence.clone()
    revised = torch.zeros_like(committed)
    if edit_threshold is not None:
        replace = committed & (best != sequence) & (best_p > edit_threshold)
        tokens = torch.where(replace, best, tokens)
        revised |= replace
    if remask_threshold is not None:
        remask = committed & ~revised & (kept_p < remask_threshold)
        tokens = torch.where(remask, torch.full_like(tokens, mask_id), tokens)
        revised |= remask
    return tokens, revised, kept_p


class BlockDiffusionScheduler:
    """Unmasks one block of `block_length` positions in `steps` steps (LLaDA2.0 semantics)."""

    def __init__(
        self,
        block_length: int = 32,
        threshold: float = 0.95,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        remask_threshold: float | None = None,
        edit_threshold: float | None = None,
    ):
        self.block_length = block_length
        self.threshold = threshold
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.remask_threshold, self.edit_threshold = remask_threshold, edit_threshold
        self.timesteps: list[int] = []
        self.quota: list[int] = []

    @property
    def self_correcting(self) -> bool:
        return self.remask_threshold is not None or self.edit_threshold is not None

    def set_timesteps(self, num_inference_steps: int) -> None:
        self.timesteps = list(range(num_inference_steps))
        self.quota = quota_schedule(self.block_length, num_inference_steps)

    def step(
        self,
        logits: torch.Tensor,
        t: int,
        sequence: torch.Tensor,
        *,
        mask_id: int,
        editable: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SchedulerOutput:
        """logits [L, V] and sequence [L] for the current block; editable marks non-prompt slots."""
        editable = torch.ones_like(sequence, dtype=torch.bool) if editable is None else editable
        revised = torch.zeros_like(editable)
        kept_p = None
        if self.self_correcting:
            sequence, revised, kept_p = _self_correct(
                logits, sequence, editable, mask_id, self.remask_threshold, self.edit_threshold
            )
        token, prob = sample_tokens(logits, self.temperature, self.top_k, self.top_p, generator)
        active = sequence == mask_id
        conf = torch.where(active, prob, torch.full_like(prob, float("-inf")))
        quota = self._quota(t, active)
        high = conf > self.threshold
        n_active = active.sum()
        # Top-quota by confidence, written without data-dependent shapes (no host sync).
        rank = torch.empty_like(sequence).scatter_(
            0, conf.argsort(descending=True, stable=True), torch.arange(len(conf), device=conf.device)
        )
        top = (rank < torch.minimum(n_active, torch.as_tensor(quota))) & active
        commit = torch.where(high.sum() >= quota, high, top)
        out = torch.where(commit, token, sequence)
        shown = prob if kept_p is None else torch.where(active, prob, kept_p)
        return SchedulerOutput(out, commit, shown.float(), revised)

    def _quota(self, t: int, active: torch.Tensor) -> int:
        if not self.self_correcting:
            return self.quota[t]
        # Re-masked tokens must be recommitted too: spread what is left over the steps left.
        steps_left = len(self.timesteps) - t
        return math.ceil(int(active.sum()) / steps_left) if steps_left > 0 else 0


class CanvasScheduler:
    """MaskGIT unmasking of all free positions at once (cosine schedule, annealed Gumbel)."""

    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        choice_temperature: float = 4.5,
        remask_threshold: float | None = None,
        edit_threshold: float | None = None,
    ):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.choice_temperature = choice_temperature
        self.remask_threshold, self.edit_threshold = remask_threshold, edit_threshold
        self.timesteps: list[int] = []
        self.remaining: list[int] = []

    def set_timesteps(self, num_inference_steps: int, num_free: int) -> None:
        """remaining[i]: positions still masked after step i (cosine; 0 after the last step)."""
        self.timesteps = list(range(num_inference_steps))
        self.remaining = [
            int(math.floor(num_free * math.cos(math.pi / 2 * (i + 1) / num_inference_steps)))
            for i in self.timesteps
        ]
        self.remaining[-1] = 0

    def step(
        self,
        logits: torch.Tensor,
        t: int,
        sequence: torch.Tensor,
        *,
        mask_id: int,
        generator: torch.Generator | None = None,
    ) -> SchedulerOutput:
        """logits [n, V] and sequence [n] over the free positions only."""
        revised = torch.zeros_like(sequence, dtype=torch.bool)
        kept_p = None
        if self.remask_threshold is not None or self.edit_threshold is not None:
            sequence, revised, kept_p = _self_correct(
                logits,
                sequence,
                torch.ones_like(revised),
                mask_id,
                self.remask_threshold,
                self.edit_threshold,
            )
        token, prob = sample_tokens(logits, self.temperature, self.top_k, self.top_p, generator)
        active = sequence == mask_id
        n_active = int(active.sum())
        n_commit = max(n_active - self.remaining[t], 1 if n_active else 0)
        # Annealed Gumbel noise spreads early commits over the canvas instead of one region.
        anneal = self.choice_temperature * (1 - (t + 1) / len(self.timesteps))
        gumbel = -torch.log(-torch.log(_uniform(prob.shape, generator, prob.device)))
        score = torch.log(prob.clamp_min(1e-30)) + anneal * gumbel
        score = torch.where(active, score, torch.full_like(score, float("-inf")))
        commit = torch.zeros_like(active)
        if n_commit:
            commit[score.topk(n_commit).indices] = True
        out = torch.where(commit, token, sequence)
        shown = prob if kept_p is None else torch.where(active, prob, kept_p)
        return SchedulerOutput(out, commit, shown.float(), revised)


def _uniform(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device).clamp(1e-10, 1 - 1e-10)
