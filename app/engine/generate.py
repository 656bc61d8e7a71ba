"""Denoising loops: run the model, apply CFG and token-range restriction, step a scheduler.

`BlockDiffusionRun` is LLaDA2.0 `generate()` (../shared/spec/llada2_moe.md §5) over a prefix KV
cache: the prompt and finished blocks are run once (their K/V cannot depend on later blocks under
the block-causal mask, §4), each step then runs only the current block. `CanvasRun` refines a
fixed set of canvas positions all at once, the prefix before the canvas cached the same way.
Both yield one `Step` per denoising step and check a cancel callable between steps.

Classifier-free guidance (../shared/spec/llada2_uni.md §4.3): the unconditional prompt is
left-padded with mask tokens to the conditional length, the padding is excluded from attention,
and its position ids restart at 0 after the padding; logits = u + s·(c − u).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from app.engine.model import KVCache, LLaDA2MoeModelLM
from app.engine.sampler import BlockDiffusionScheduler, CanvasScheduler, restrict_logits


@dataclass
class Step:
    """What one denoising step did, for live views and the history scrubber."""

    index: int
    total: int
    committed: torch.Tensor  # absolute positions committed this step
    tokens: torch.Tensor  # their tokens
    window: torch.Tensor  # absolute positions whose confidence is reported (the free positions)
    confidence: torch.Tensor  # fp32 per window position
    revised: torch.Tensor  # absolute positions changed by self-correction
    revised_tokens: torch.Tensor  # their new tokens (mask_id where re-masked)
    expert_counts: torch.Tensor | None  # [moe_layers, E] tokens routed in this step's forward
    sequence: torch.Tensor  # the whole conditional row after the step (a view: copy to keep)


class Cancelled(Exception):
    """Raised by a run when its cancel callable said stop between two steps."""


@dataclass
class GuidanceRows:
    """Batch rows for a conditional (and optional unconditional) sequence."""

    ids: torch.Tensor  # [B, T]
    positions: torch.Tensor  # [B, T]
    key_valid: torch.Tensor  # [B, T] bool: False for the uncond row's left padding


def build_rows(
    cond_prefix: torch.Tensor,
    tail: torch.Tensor,
    mask_id: int,
    uncond_prefix: torch.Tensor | None = None,
) -> GuidanceRows:
    """[prefix | tail] rows; the uncond prefix is left-padded to the cond prefix length."""
    p = cond_prefix.numel()
    cond = torch.cat([cond_prefix, tail])
    rows, positions = [cond], [torch.arange(cond.numel(), device=cond.device)]
    valid = [torch.ones_like(cond, dtype=torch.bool)]
    if uncond_prefix is not None:
        pad = p - uncond_prefix.numel()
        if pad < 0:
            raise ValueError(
                f"unconditional prompt ({uncond_prefix.numel()} tokens) is longer than the "
                f"conditional one ({p}); it must not be"
            )
        filler = torch.full((pad,), mask_id, dtype=cond.dtype, device=cond.device)
        rows.append(torch.cat([filler, uncond_prefix, tail]))
        pos = torch.arange(cond.numel(), device=cond.device) - pad
        positions.append(pos.clamp_min(0))
        valid.append(torch.arange(cond.numel(), device=cond.device) >= pad)
    return GuidanceRows(torch.stack(rows), torch.stack(positions), torch.stack(valid))


def segment_mask(
    segments: torch.Tensor, key_valid: torch.Tensor, q_start: int, q_end: int
) -> torch.Tensor:
    """Bool [B, 1, Q, K]: query col q sees key col k iff segment(k) <= segment(q) and k is valid.

    With segments = col // block_length this is LLaDA2's block-causal mask (spec §4).
    """
    q_seg = segments[q_start:q_end]
    k_seg = segments[:q_end]
    allowed = k_seg.unsqueeze(0) <= q_seg.unsqueeze(1)
    return (allowed.unsqueeze(0) & key_valid[:, None, :q_end]).unsqueeze(1)


def guided_logits(logits: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Rows [cond, uncond] -> u + s·(c − u); a single row passes through."""
    if logits.shape[0] == 1:
        return logits[0]
    cond, uncond = logits[0], logits[1]
    return uncond + cfg_scale * (cond - uncond)


class _Runner:
    """Runs the model over rows with a segment mask, cached or not (shared by both loops)."""

    def __init__(
        self, model: LLaDA2MoeModelLM, rows: GuidanceRows, segments: torch.Tensor, use_cache: bool
    ):
        self.model, self.rows, self.segments = model, rows, segments
        total = rows.ids.shape[1]
        self.cache = (
            KVCache.allocate(model.config, rows.ids.shape[0], total, model.dtype, model.device)
            if use_cache
            else None
        )

    def logits(self, done: int, start: int, end: int) -> torch.Tensor:
        """Logits [B, end-start, V] for cols [start, end); cols < done are final and cacheable."""
        ids, pos, valid = self.rows.ids, self.rows.positions, self.rows.key_valid
        if self.cache is None:
            mask = segment_mask(self.segments, valid, 0, end)
            return self.model(
                ids[:, :end], mask, pos[:, :end], logits_index=slice(start, end)
            )
        q0 = self.cache.length
        write = max(0, min(done, start) - q0)
        mask = segment_mask(self.segments, valid, q0, end)
        return self.model(
            ids[:, q0:end],
            mask,
            pos[:, q0:end],
            cache=self.cache,
            cache_write=write,
            logits_index=slice(start - q0, end - q0),
        )

    def write(self, cols: torch.Tensor, tokens: torch.Tensor) -> None:
        self.rows.ids[:, cols] = tokens  # every guidance row gets the committed tokens


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled()


class BlockDiffusionRun:
    """Iterate to denoise; `result()` then gives the generated ids (spec §5.5)."""

    def __init__(
        self,
        model: LLaDA2MoeModelLM,
        prompt_ids: torch.Tensor,
        *,
        gen_length: int,
        mask_id: int,
        eos_id: int | None,
        block_length: int = 32,
        steps: int = 32,
        scheduler: BlockDiffusionScheduler | None = None,
        eos_early_stop: bool = False,
        minimal_topk: int = 1,
        uncond_ids: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
        token_range: tuple[int, int] | None = None,
        stop_ids: tuple[int, ...] = (),
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        should_cancel: Callable[[], bool] | None = None,
        canvas: torch.Tensor | None = None,
        pad_to_block: bool = True,
    ):
        """canvas: starting tokens of the generated span (mask_id = to generate; others stay, as
        in inpainting). pad_to_block=False ends the sequence at prompt + gen_length instead of
        padding it with masks to a whole block (spec §5.2 pads; a model trained on unpadded
        canvases, like the demo, samples best without)."""
        prompt_ids = prompt_ids.reshape(-1).to(model.device)
        self.model, self.mask_id, self.eos_id = model, mask_id, eos_id
        self.prompt_len, self.gen_length = prompt_ids.numel(), gen_length
        self.block_length = block_length
        self.steps = min(steps, gen_length // minimal_topk)
        self.scheduler = scheduler or BlockDiffusionScheduler(block_length)
        self.scheduler.block_length = block_length
        self.scheduler.set_timesteps(self.steps)
        self.eos_early_stop, self.token_range = eos_early_stop, token_range
        self.stop_ids = tuple(stop_ids) + ((eos_id,) if eos_id is not None else ())
        self.generator, self.should_cancel = generator, should_cancel
        total = self.prompt_len + gen_length
        if pad_to_block:
            total = math.ceil(total / block_length) * block_length
        tail = torch.full((total - self.prompt_len,), mask_id, dtype=torch.long, device=model.device)
        if canvas is not None:
            tail[:gen_length] = canvas.reshape(-1).to(tail)
        use_uncond = uncond_ids is not None and cfg_scale != 1.0
        self.cfg_scale = cfg_scale
        rows = build_rows(
            prompt_ids, tail, mask_id, uncond_ids.reshape(-1).to(model.device) if use_uncond else None
        )
        segments = torch.arange(total, device=model.device) // block_length
        self.runner = _Runner(model, rows, segments, use_cache)
        # Only the masked slots after the prompt are generated; given canvas tokens stay.
        self.editable = torch.cat([torch.zeros(self.prompt_len, dtype=torch.bool,
                                               device=model.device), tail == mask_id])
        self.first_block = self.prompt_len // block_length
        self.num_blocks = math.ceil(total / block_length)
        # Blocks with something to generate, decided once, off the hot path (inpainting skips
        # blocks of given cells).
        self.busy_blocks = [b for b in range(self.first_block, self.num_blocks)
                            if bool(self.editable[b * block_length:(b + 1) * block_length].any())]
        self.stopped_at: int | None = None  # eos_early_stop position, if it fired

    @property
    def sequence(self) -> torch.Tensor:
        return self.runner.rows.ids[0]

    @property
    def total_steps(self) -> int:
        return len(self.busy_blocks) * self.steps

    def __iter__(self) -> Iterator[Step]:
        x, L, index = self.sequence, self.block_length, 0
        for b in self.busy_blocks:
            start, end = b * L, min((b + 1) * L, x.numel())
            editable = self.editable[start:end]
            for t in self.scheduler.timesteps:
                if not bool((x[start:end] == self.mask_id).any()) and not self._correcting():
                    break
                _check_cancel(self.should_cancel)
                logits = self.runner.logits(start, start, end)
                logits = restrict_logits(guided_logits(logits, self.cfg_scale), self.token_range)
                out = self.scheduler.step(
                    logits, t, x[start:end].clone(), mask_id=self.mask_id, editable=editable,
                    generator=self.generator,
                )
                cols = torch.arange(start, end, device=x.device)
                self.runner.write(cols, out.prev_sample)
                yield self._record(index, cols, out)
                index += 1
                if self.eos_early_stop and self._early_stop(out, cols):
                    return
            if self._stop_token_in(x[self.prompt_len : end]):
                return

    def _correcting(self) -> bool:
        return self.scheduler.self_correcting

    def _record(self, index: int, cols: torch.Tensor, out) -> Step:
        committed = cols[out.committed]
        return Step(
            index=index,
            total=self.total_steps,
            committed=committed,
            tokens=self.sequence[committed],
            window=cols,
            confidence=out.confidence,
            revised=cols[out.revised],
            revised_tokens=self.sequence[cols[out.revised]],
            expert_counts=self.model.expert_counts(),
            sequence=self.sequence,
        )

    def _stop_token_in(self, tokens: torch.Tensor) -> bool:
        if not self.stop_ids:
            return False
        return bool(torch.isin(tokens, torch.tensor(self.stop_ids, device=tokens.device)).any())

    def _early_stop(self, out, cols: torch.Tensor) -> bool:
        """spec §5.6, returning only the generated part (the dllm / LLaDA2.1 form)."""
        if self.eos_id is None or not bool((out.prev_sample[out.committed] == self.eos_id).any()):
            return False
        gen = self.sequence[self.prompt_len :]
        eos_pos = int((gen == self.eos_id).nonzero()[0])
        if bool((gen[:eos_pos] == self.mask_id).any()):
            return False
        self.stopped_at = eos_pos
        return True

    def run(self) -> torch.Tensor:
        for _ in self:
            pass
        return self.result()

    def result(self) -> torch.Tensor:
        ans = self.sequence[self.prompt_len : self.prompt_len + self.gen_length]
        if self.eos_id is not None:
            hits = (ans == self.eos_id).nonzero()
            if len(hits):
                return ans[: int(hits[0]) + 1].clone()
        return ans.clone()


class CanvasRun:
    """Refine `free` positions of `ids` all at once; cols >= prefix_len form one segment."""

    def __init__(
        self,
        model: LLaDA2MoeModelLM,
        ids: torch.Tensor,
        free: torch.Tensor,
        *,
        prefix_len: int,
        mask_id: int,
        steps: int = 16,
        scheduler: CanvasScheduler | None = None,
        uncond_prefix: torch.Tensor | None = None,
        cfg_scale: float = 1.0,
        token_range: tuple[int, int] | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ):
        ids = ids.reshape(-1).to(model.device).clone()
        free = free.reshape(-1).to(model.device)
        if bool(free[:prefix_len].any()):
            raise ValueError("free positions must lie after the prefix")
        self.model, self.mask_id, self.prefix_len = model, mask_id, prefix_len
        self.free_cols = free.nonzero().squeeze(-1)
        ids[self.free_cols] = mask_id
        self.scheduler = scheduler or CanvasScheduler()
        self.scheduler.set_timesteps(steps, self.free_cols.numel())
        self.cfg_scale, self.token_range = cfg_scale, token_range
        self.generator, self.should_cancel = generator, should_cancel
        use_uncond = uncond_prefix is not None and cfg_scale != 1.0
        rows = build_rows(
            ids[:prefix_len],
            ids[prefix_len:],
            mask_id,
            uncond_prefix.reshape(-1).to(model.device) if use_uncond else None,
        )
        segments = (torch.arange(ids.numel(), device=model.device) >= prefix_len).long()
        self.runner = _Runner(model, rows, segments, use_cache)

    @property
    def sequence(self) -> torch.Tensor:
        return self.runner.rows.ids[0]

    def __iter__(self) -> Iterator[Step]:
        total, end = len(self.scheduler.timesteps), self.sequence.numel()
        for t in self.scheduler.timesteps:
            _check_cancel(self.should_cancel)
            logits = self.runner.logits(self.prefix_len, self.prefix_len, end)
            logits = guided_logits(logits, self.cfg_scale)[self.free_cols - self.prefix_len]
            logits = restrict_logits(logits, self.token_range)
            out = self.scheduler.step(
                logits, t, self.sequence[self.free_cols].clone(), mask_id=self.mask_id,
                generator=self.generator,
            )
            self.runner.write(self.free_cols, out.prev_sample)
            committed = self.free_cols[out.committed]
            revised = self.free_cols[out.revised]
            yield Step(
                index=t,
                total=total,
                committed=committed,
                tokens=self.sequence[committed],
                window=self.free_cols,
                confidence=out.confidence,
                revised=revised,
                revised_tokens=self.sequence[revised],
                expert_counts=self.model.expert_counts(),
                sequence=self.sequence,
            )

    def run(self) -> torch.Tensor:
        for _ in self:
            pass
        return self.sequence.clone()


@torch.no_grad()
def generate_text(
    model: LLaDA2MoeModelLM,
    prompt_ids: torch.Tensor,
    *,
    gen_length: int,
    block_length: int = 32,
    steps: int = 32,
    threshold: float = 0.95,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None,
    mask_id: int,
    eos_early_stop: bool = False,
    minimal_topk: int = 1,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LLaDA2.0 `generate()` (spec §5) with the KV cache: the generated ids, prompt excluded."""
    scheduler = BlockDiffusionScheduler(block_length, threshold, temperature, top_k, top_p)
    run = BlockDiffusionRun(
        model,
        prompt_ids,
        gen_length=gen_length,
        mask_id=mask_id,
        eos_id=eos_id,
        block_length=block_length,
        steps=steps,
        scheduler=scheduler,
        eos_early_stop=eos_early_stop,
        minimal_topk=minimal_topk,
        use_cache=use_cache,
        generator=generator,
    )
    run.run()
    if run.stopped_at is not None:
        return run.sequence[run.prompt_len : run.prompt_len + run.stopped_at + 1].clone()
    return run.result()
