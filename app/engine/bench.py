"""`unmask bench engine`: our decoding loop against a faithful re-creation of the reference loop.

The reference (official modeling code + `generate()`, ../shared/spec/llada2_moe.md §5) loops over
experts in Python with a host sync for the token counts, recomputes the whole window every step
(no KV cache) and computes fp32 logits for every window position. We time the workload of the
issue: a 1024-token image (prompt 64, block 32, 8 steps per block, CFG = 2 rows), all in one run.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from app.engine.generate import BlockDiffusionRun
from app.engine.model import LLaDA2MoeModelLM
from app.engine.presets import config_for, random_model
from app.engine.sampler import BlockDiffusionScheduler
from app.engine.sync import synchronize


def looped_experts(experts, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """HF `moe_infer`: counts to the host, then one small matmul chain per expert."""
    out = x_sorted.new_empty(x_sorted.shape[0], experts.down_proj.shape[1])
    start = 0
    for e, n in enumerate(counts.cpu().numpy().tolist()):
        if n:
            out[start : start + n] = experts.compute_one(e, x_sorted[start : start + n])
            start += n
    return out


class ReferenceStyle(nn.Module):
    """Wraps a model so it behaves like the reference: all-position logits, looped experts."""

    def __init__(self, model: LLaDA2MoeModelLM):
        super().__init__()
        self.inner = model
        self.config, self.dtype, self.device = model.config, model.dtype, model.device

    def expert_counts(self):
        return self.inner.expert_counts()

    def forward(self, ids, mask=None, pos=None, *, cache=None, cache_write=0, logits_index=None):
        assert cache is None, "the reference has no KV cache"
        for block in self.inner.moe_blocks():
            block.executor = looped_experts
        try:
            logits = self.inner(ids, mask, pos)  # every position, fp32
        finally:
            for block in self.inner.moe_blocks():
                block.executor = None
        return logits if logits_index is None else logits[:, logits_index]


@dataclass
class LoopTiming:
    name: str
    seconds: float
    forwards: int

    @property
    def ms_per_forward(self) -> float:
        return 1000 * self.seconds / max(self.forwards, 1)


def progress(timing: LoopTiming, note: str = "") -> None:
    """Each variant's figure on stderr as it lands: a long run cut short still leaves them."""
    print(f"  {timing.name}: {timing.seconds:.2f} s, {timing.forwards} forwards, "
          f"{timing.ms_per_forward:.1f} ms/forward" + (f" ({note})" if note else ""),
          file=sys.stderr, flush=True)


@torch.no_grad()
def image_loop(model, *, prompt_len: int, image_tokens: int, use_cache: bool, cfg: bool,
               max_forwards: int | None = None) -> int:
    """Runs the T2I block loop with a fixed quota per step; returns the forwards done.

    max_forwards: stop after that many (a slow baseline timed on the loop's first forwards)."""
    config = model.config
    gen = torch.Generator(device="cpu").manual_seed(0)
    offset = config.image_token_offset or 0
    prompt = torch.randint(0, max(offset, 2), (prompt_len,), generator=gen)
    uncond = prompt[-8:] if cfg else None
    # threshold > 1: never batch-accept, so every block takes exactly `steps` forwards.
    scheduler = BlockDiffusionScheduler(32, threshold=1.01)
    run = BlockDiffusionRun(
        model, prompt, gen_length=image_tokens, mask_id=config.extra.get("mask_token_id", 0),
        eos_id=None, block_length=32, steps=8, scheduler=scheduler, uncond_ids=uncond,
        cfg_scale=2.0 if cfg else 1.0, token_range=(offset, config.vocab_size), use_cache=use_cache,
    )
    done = 0
    for _ in run:
        done += 1
        if max_forwards is not None and done >= max_forwards:
            break
    return done


def run_engine_bench(
    scale: str, device: str, dtype: torch.dtype, image_tokens: int, repeats: int,
    skip_reference: bool = False,
) -> list[LoopTiming]:
    torch.manual_seed(0)
    dev = torch.device(device)
    model = random_model(config_for(scale), seed=0, dtype=dtype, device=dev)
    variants = [("ours, KV cache", model, True), ("ours, no cache", model, False)]
    if not skip_reference:
        variants.append(("reference loop (HF-style)", ReferenceStyle(model), False))
    results = []
    for name, m, cache in variants:
        image_loop(m, prompt_len=64, image_tokens=64, use_cache=cache, cfg=True)  # warm-up
        times, forwards = [], 0
        for _ in range(repeats):
            synchronize(dev)
            start = time.perf_counter()
            forwards = image_loop(m, prompt_len=64, image_tokens=image_tokens, use_cache=cache,
                                  cfg=True)
            synchronize(dev)
            times.append(time.perf_counter() - start)
        results.append(LoopTiming(name, statistics.median(times), forwards))
        progress(results[-1])
    return results


def format_table(results: list[LoopTiming], header: str) -> str:
    base = results[-1].seconds
    lines = [header, f"{'variant':<28}{'image loop s':>14}{'forwards':>10}{'ms/forward':>12}"
             f"{'forwards/s':>12}{'speed-up':>10}"]
    for r in results:
        lines.append(
            f"{r.name:<28}{r.seconds:>14.2f}{r.forwards:>10}{r.ms_per_forward:>12.1f}"
            f"{1000 / r.ms_per_forward:>12.1f}{base / r.seconds:>9.1f}x"
        )
    return "\n".join(lines)
