"""The MoE feed-forward of LLaDA2.0: sigmoid group-limited router, stacked routed experts, shared expert.

Math from ../shared/spec/llada2_moe.md §3.4-3.6. Expert weights are stacked per layer
([E, Im, H] / [E, H, Im], the fused checkpoint layout of spec §8) so one grouped matmul serves
every token, while each expert stays addressable by index for placement (placement.py).
"""

from __future__ import annotations

import warnings
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.config import LLaDA2MoeConfig

# Spec §3.5 step 4: a group's score is the sum of its 2 best biased scores (hard-coded upstream).
GROUP_SCORE_TOP = 2
# Spec §3.5 step 5: epsilon of the weight normalisation.
NORM_EPS = 1e-20

_HAS_GROUPED_MM = hasattr(F, "grouped_mm") or hasattr(torch, "_grouped_mm")
# Why grouped_mm was given up (None: not given up). Its support differs across torch builds and
# GPUs; a build that refuses it falls back to the loop once, with a warning, instead of failing.
_grouped_mm_error: str | None = None


def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    fn = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return fn(x, w, offs=offs)


def expert_kernel(device: torch.device | str) -> str:
    """Which kernel runs the routed experts on `device` (for benchmark headers)."""
    if torch.device(device).type != "cuda":
        return "loop over active experts"
    if not _HAS_GROUPED_MM:
        return "loop over active experts (this torch has no grouped_mm)"
    if _grouped_mm_error is not None:
        return f"loop over active experts (grouped_mm failed: {_grouped_mm_error})"
    return "grouped_mm"


def _give_up_grouped_mm(error: RuntimeError) -> None:
    global _grouped_mm_error
    _grouped_mm_error = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    warnings.warn(f"grouped_mm failed, routed experts run as a loop from now on: {_grouped_mm_error}",
                  RuntimeWarning, stacklevel=3)


class MLP(nn.Module):
    """down(silu(gate(x)) * up(x)), no biases (spec §3.4); used for dense layers and shared experts."""

    def __init__(self, hidden: int, intermediate: int, dtype=None, device=None):
        super().__init__()
        kw = dict(bias=False, dtype=dtype, device=device)
        self.gate_proj = nn.Linear(hidden, intermediate, **kw)
        self.up_proj = nn.Linear(hidden, intermediate, **kw)
        self.down_proj = nn.Linear(intermediate, hidden, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoeRouter(nn.Module):
    """`mlp.gate`: fp32 sigmoid scores, bias for selection only, group-limited top-k (spec §3.5)."""

    def __init__(self, config: LLaDA2MoeConfig, device=None):
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.scaling = config.routed_scaling_factor
        self.weight = nn.Parameter(
            torch.empty(config.num_experts, config.hidden_size, device=device, dtype=torch.float32)
        )
        self.register_buffer(
            "expert_bias", torch.zeros(config.num_experts, device=device, dtype=torch.float32)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, H] -> (topk_idx [T, K], topk_weight [T, K] fp32, logits [T, E] fp32)."""
        logits = x.float() @ self.weight.float().t()
        scores = torch.sigmoid(logits)
        biased = scores + self.expert_bias.float()
        per_group = biased.view(-1, self.n_group, self.num_experts // self.n_group)
        group_score = per_group.topk(GROUP_SCORE_TOP, dim=-1).values.sum(-1)
        keep_groups = group_score.topk(self.topk_group, dim=-1, sorted=False).indices
        group_mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep_groups, True)
        expert_mask = group_mask.repeat_interleave(self.num_experts // self.n_group, dim=1)
        masked = biased.masked_fill(~expert_mask, float("-inf"))
        topk_idx = masked.topk(self.top_k, dim=-1, sorted=True).indices
        weight = scores.gather(1, topk_idx)  # unbiased scores (spec §3.5 step 5)
        if self.top_k > 1:
            weight = weight / (weight.sum(-1, keepdim=True) + NORM_EPS)
        return topk_idx, weight * self.scaling, logits


class ExpertExecutor(Protocol):
    """Computes routed experts for sorted token groups; placement.py provides GPU/CPU executors."""

    def __call__(
        self, experts: StackedExperts, x_sorted: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor: ...


class StackedExperts(nn.Module):
    """All routed experts of one layer: gate/up [E, Im, H], down [E, H, Im] (fused layout)."""

    def __init__(self, config: LLaDA2MoeConfig, dtype=None, device=None):
        super().__init__()
        e, im, h = config.num_experts, config.moe_intermediate_size, config.hidden_size
        kw = dict(dtype=dtype, device=device)
        self.num_experts = e
        self.gate_proj = nn.Parameter(torch.empty(e, im, h, **kw))
        self.up_proj = nn.Parameter(torch.empty(e, im, h, **kw))
        self.down_proj = nn.Parameter(torch.empty(e, h, im, **kw))

    def compute_sorted(
        self, x_sorted: torch.Tensor, counts: torch.Tensor, grouped: bool | None = None
    ) -> torch.Tensor:
        """Rows of x_sorted are grouped by expert (counts[e] rows for expert e, in order).

        grouped: force (True) or forbid (False) the grouped matmul; None picks the faster one.
        """
        if grouped or grouped is None and self._grouped_mm_ok(x_sorted):
            try:
                return self._compute_grouped(x_sorted, counts)
            except RuntimeError as error:
                if grouped:  # forced: the caller wants to know
                    raise
                _give_up_grouped_mm(error)
        # Fallback: loop over the experts that received tokens (one host sync for the counts).
        out = x_sorted.new_empty(x_sorted.shape[0], self.down_proj.shape[1])
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n:
                out[start : start + n] = self.compute_one(e, x_sorted[start : start + n])
                start += n
        return out

    def _compute_grouped(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        offs = counts.cumsum(0).to(torch.int32)
        gate = _grouped_mm(x_sorted, self.gate_proj.transpose(1, 2), offs)
        up = _grouped_mm(x_sorted, self.up_proj.transpose(1, 2), offs)
        return _grouped_mm(F.silu(gate) * up, self.down_proj.transpose(1, 2), offs)

    def compute_one(self, e: int, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.silu(F.linear(x, self.gate_proj[e])) * F.linear(x, self.up_proj[e]),
                        self.down_proj[e])

    def _grouped_mm_ok(self, x: torch.Tensor) -> bool:
        # grouped_mm wants 16-byte aligned strides and matching dtypes; its CPU backward fails
        # in torch 2.13, so training takes the loop.
        if (not _HAS_GROUPED_MM or _grouped_mm_error is not None or x.dtype != self.gate_proj.dtype
                or x.shape[0] == 0):
            return False
        # On the CPU, torch 2.13's grouped_mm measured ~12x slower than a loop over experts.
        if x.device.type != "cuda":
            return False
        if torch.is_grad_enabled() and (x.requires_grad or self.gate_proj.requires_grad):
            return False
        align = 16 // x.element_size()
        return x.shape[1] % align == 0 and self.gate_proj.shape[1] % align == 0


class MoeBlock(nn.Module):
    """`mlp` of an MoE layer: y = sum_k w_k Expert_k(x) (fp32 accumulate) + SharedMLP(x) (spec §3.6)."""

    def __init__(self, config: LLaDA2MoeConfig, dtype=None, device=None):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.gate = MoeRouter(config, device=device)
        self.experts = StackedExperts(config, dtype=dtype, device=device)
        shared = config.shared_intermediate_size
        self.shared_experts = (
            MLP(config.hidden_size, shared, dtype=dtype, device=device) if shared else None
        )
        # Per-expert token counts of the last forward ([E], int64, stays on device: no sync).
        self.last_counts: torch.Tensor | None = None
        # Optional executor (expert placement); None computes every expert where its weights are.
        self.executor: ExpertExecutor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        topk_idx, topk_weight, _ = self.gate(flat)
        routed = self.route_and_compute(flat, topk_idx, topk_weight)
        y = routed.to(x.dtype)
        if self.shared_experts is not None:
            y = y + self.shared_experts(flat)
        return y.view(shape)

    def route_and_compute(
        self, x: torch.Tensor, topk_idx: torch.Tensor, topk_weight: torch.Tensor
    ) -> torch.Tensor:
        """Group the (token, expert) pairs by expert, run them, and sum back in fp32."""
        flat_idx = topk_idx.reshape(-1)
        order = flat_idx.argsort(stable=True)
        token_of = order // self.top_k
        counts = torch.bincount(flat_idx, minlength=self.experts.num_experts)
        self.last_counts = counts
        x_sorted = x[token_of]
        if self.executor is not None:
            out = self.executor(self.experts, x_sorted, counts)
        else:
            out = self.experts.compute_sorted(x_sorted, counts)
        weighted = out.float() * topk_weight.reshape(-1)[order].unsqueeze(-1)
        y = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
        return y.index_add_(0, token_of, weighted)
