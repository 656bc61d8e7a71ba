"""Expert placement, execution: slot pools, CPU masters and copy-vs-compute per MoE layer.

`LayerPlacement` is installed as `MoeBlock.executor`. Per layer and forward it reads the routing
counts (the one host sync: every decision needs them), then
  1. starts copies of the chosen non-resident experts into freed slots on a side CUDA stream
     (non-blocking, from pinned masters), evicting the experts least used recently;
  2. sends the other non-resident experts' rows to a CPU thread pool (grouped per worker);
  3. computes the resident experts on the device with one grouped matmul over the slot pool,
     overlapping 1 and 2; then the copied experts once their copies land; then adds the CPU rows.
Copy or compute is decided by a cost model calibrated at start (copy bandwidth, CPU time per
expert as fixed + per-row cost) that credits a copy with the remaining steps of the block, since
routing is stable across a block's denoising steps. The accelerator is a parameter: with
device="cpu" the same slots, copies, decisions and thread pool run, only on one device.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.moe import StackedExperts

if TYPE_CHECKING:
    from app.engine.placement_runtime import PlacementRuntime

PROJ = ("gate_proj", "up_proj", "down_proj")
# Per forward, recent use halves: eviction prefers experts this block has not been using.
RECENT_DECAY = 0.5
_INT8_MM = hasattr(torch, "_weight_int8pack_mm")


def physical_cores() -> int:
    try:
        import psutil  # an accelerate dependency

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


@dataclass
class CostModel:
    """Seconds to copy bytes to the device, and to compute one expert of n rows on the CPU."""

    copy_bytes_per_s: float
    cpu_fixed_s: float  # per expert: streaming its weights from RAM + dispatch
    cpu_per_row_s: float

    def copy_s(self, nbytes: int) -> float:
        return nbytes / self.copy_bytes_per_s

    def cpu_s(self, rows: int) -> float:
        return self.cpu_fixed_s + rows * self.cpu_per_row_s

    def worth_copying(self, nbytes: int, rows: int, uses_left: int) -> bool:
        # One copy, then the device computes it for the remaining steps of the block (~free).
        return self.copy_s(nbytes) < uses_left * self.cpu_s(rows)


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: w [out, in] ~= q * scale[:, None]."""
    wf = w.float()
    scale = wf.abs().amax(-1).clamp_min(1e-12) / 127
    return torch.round(wf / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def _int8_linear(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    global _INT8_MM
    if _INT8_MM:
        try:
            return torch._weight_int8pack_mm(x, q, scale)  # reads int8 weights: half the bytes
        except RuntimeError:
            _INT8_MM = False  # an unsupported shape/build: dequantise from now on
    return F.linear(x, q.float() * scale[:, None])


@dataclass
class Int8Experts:
    """int8 copies of one layer's experts for the CPU path: [E, out, in] + fp32 scales [E, out]."""

    q: dict[str, torch.Tensor]
    scale: dict[str, torch.Tensor]

    @classmethod
    def quantize(cls, experts: StackedExperts) -> Int8Experts:
        q, scale = {}, {}
        for name in PROJ:
            w = getattr(experts, name).detach()
            q[name] = torch.empty(w.shape, dtype=torch.int8)
            scale[name] = torch.empty(w.shape[:2], dtype=torch.float32)
            for e in range(w.shape[0]):  # one expert at a time bounds the fp32 temporaries
                q[name][e], scale[name][e] = quantize_int8(w[e].cpu())
        return cls(q, scale)

    def compute(self, e: int, x: torch.Tensor) -> torch.Tensor:
        def lin(v: torch.Tensor, name: str) -> torch.Tensor:
            return _int8_linear(v, self.q[name][e], self.scale[name][e])

        xf = x.float()
        return lin(F.silu(lin(xf, "gate_proj")) * lin(xf, "up_proj"), "down_proj")


@dataclass
class Counters:
    steps: int = 0
    activations: int = 0  # (layer call, expert with tokens) pairs
    hits: int = 0  # ... whose expert was already in a slot
    copies: int = 0
    evictions: int = 0
    cpu_experts: int = 0
    rows: int = 0  # (token, expert) rows; expert FLOPs are proportional to rows
    rows_cpu: int = 0
    bytes_copied: int = 0


def _stacked_view(tensors: list[torch.Tensor]) -> StackedExperts:
    """A StackedExperts over given tensors, so slots use the model's own grouped kernel."""
    view = StackedExperts.__new__(StackedExperts)
    nn.Module.__init__(view)
    view.num_experts = tensors[0].shape[0]
    for name, t in zip(PROJ, tensors, strict=True):
        view.register_parameter(name, nn.Parameter(t, requires_grad=False))
    return view


def _ranges(starts: list[int], lengths: list[int]) -> torch.Tensor:
    """Concatenated aranges [s, s+n) as one LongTensor (row indices of expert groups)."""
    n = torch.tensor(lengths, dtype=torch.long)
    shift = torch.tensor(starts, dtype=torch.long) - (n.cumsum(0) - n)
    return torch.arange(int(n.sum())) + shift.repeat_interleave(n)


def split_contiguous(items: list[tuple[int, int, int]], workers: int) -> list[list[tuple[int, int, int]]]:
    """Cut (expert, start, rows) items, in expert order, into <= workers runs of similar load, so
    each worker's rows are one slice and its experts one grouped call. +4 rows stands for each
    expert's fixed cost (streaming its weights)."""
    loads = [n + 4 for _, _, n in items]
    target = sum(loads) / max(1, workers)
    chunks: list[list[tuple[int, int, int]]] = [[]]
    done = 0.0
    for item, load in zip(items, loads, strict=True):
        chunks[-1].append(item)
        done += load
        if done >= target * len(chunks) and len(chunks) < workers:
            chunks.append([])
    return [c for c in chunks if c]


class LayerPlacement:
    """One MoE layer: its slot pool on the device, its CPU masters, and the executor."""

    def __init__(self, runtime: PlacementRuntime, index: int, experts: StackedExperts,
                 resident: list[int]):
        self.rt, self.index, self.masters = runtime, index, experts
        self.num_experts = experts.num_experts
        self.hidden = experts.down_proj.shape[1]
        self.expert_bytes = sum(getattr(experts, n)[0].nbytes for n in PROJ)
        self.slot_expert = list(resident)  # slot -> expert (-1: empty)
        self.slot_of = [-1] * self.num_experts  # expert -> slot (-1: not resident)
        for s, e in enumerate(resident):
            self.slot_of[e] = s
        self.recent = torch.zeros(self.num_experts, dtype=torch.float64)
        self.int8 = Int8Experts.quantize(experts) if runtime.plan.int8_cpu else None
        # All resident on the masters' own device: the masters are the slots (no second copy).
        self.aliased = (resident == list(range(self.num_experts))
                        and runtime.device == experts.gate_proj.device)
        self.pool: StackedExperts | None = None
        if self.aliased:
            self.pool = experts
        elif resident:
            idx = torch.tensor(resident)
            self.pool = _stacked_view(
                [getattr(experts, n).detach().index_select(0, idx).to(runtime.device) for n in PROJ]
            )
        self.copied: torch.cuda.Event | None = None

    # ---- the executor ----------------------------------------------------------------------
    def __call__(self, experts: StackedExperts, x_sorted: torch.Tensor, counts: torch.Tensor):
        rt, c = self.rt, self.rt.counters
        rows = counts.tolist()  # the host sync: every decision below needs the counts
        counts_host = torch.tensor(rows, dtype=torch.float64)
        self.recent.mul_(RECENT_DECAY).add_(counts_host)
        if rt.track_heat:
            rt.heat.counts[self.index] += counts_host
        active = [e for e, n in enumerate(rows) if n]
        hits = [] if rt.force_cpu else [e for e in active if self.slot_of[e] >= 0]
        hit_set = set(hits)
        misses = [e for e in active if e not in hit_set]
        c.activations += len(active)
        c.hits += len(hits)
        c.rows += x_sorted.shape[0]
        if not misses and self.aliased:  # everything resident where it lives: the plain path
            return self.pool.compute_sorted(x_sorted, counts)
        copies, cpu = self._decide(misses, rows, set(active))
        starts = torch.tensor(rows).cumsum(0).sub_(torch.tensor(rows)).tolist()
        self._start_copies(copies)
        job = self._start_cpu(x_sorted, cpu, starts, rows)
        out = x_sorted.new_empty(x_sorted.shape[0], self.hidden)
        self._compute_slots(x_sorted, out, hits, starts, rows)
        if copies:
            if self.copied is not None:  # the compute stream waits for the side stream's copies
                torch.cuda.current_stream(rt.device).wait_event(self.copied)
            self._compute_slots(x_sorted, out, [e for e, _ in copies], starts, rows)
        if job is not None:
            self._finish_cpu(job, out)
        return out

    def _decide(self, misses: list[int], rows: list[int], active: set[int]):
        """(copies [(expert, slot)], cpu experts). Biggest misses get the coldest free slots."""
        rt = self.rt
        if rt.policy == "cpu" or rt.force_cpu or self.pool is None or self.aliased:
            return [], misses
        recent = self.recent.tolist()
        free = [s for s, e in enumerate(self.slot_expert) if e < 0 or e not in active]
        free.sort(key=lambda s: -1.0 if self.slot_expert[s] < 0 else recent[self.slot_expert[s]])
        uses_left = rt.uses_left()
        copies, cpu = [], []
        for e in sorted(misses, key=lambda e: -rows[e]):
            victim = self.slot_expert[free[0]] if free else -1
            if not free or rt.policy == "auto" and (
                not rt.cost.worth_copying(self.expert_bytes, rows[e], uses_left)
                or (victim >= 0 and recent[victim] >= recent[e])  # never evict a hotter expert
            ):
                cpu.append(e)
                continue
            slot = free.pop(0)
            if victim >= 0:
                self.slot_of[victim] = -1
                rt.counters.evictions += 1
            self.slot_of[e], self.slot_expert[slot] = slot, e
            copies.append((e, slot))
        return copies, sorted(cpu)

    def _start_copies(self, copies: list[tuple[int, int]]) -> None:
        if not copies:
            return
        rt, cuda = self.rt, self.rt.device.type == "cuda"
        rt.counters.copies += len(copies)
        rt.counters.bytes_copied += len(copies) * self.expert_bytes
        if cuda:
            # The slots being overwritten were last read by kernels queued on the compute stream.
            rt.copy_stream.wait_stream(torch.cuda.current_stream(rt.device))
        with torch.cuda.stream(rt.copy_stream) if cuda else nullcontext():
            for e, s in copies:
                for name in PROJ:
                    getattr(self.pool, name)[s].copy_(getattr(self.masters, name)[e], non_blocking=cuda)
            if cuda:
                self.copied = torch.cuda.Event()
                self.copied.record(rt.copy_stream)

    def _compute_slots(self, x_sorted, out, experts: list[int], starts, rows) -> None:
        """One grouped matmul over the whole pool; slots without rows are empty groups."""
        if not experts:
            return
        dev = self.rt.device
        experts = sorted(experts, key=self.slot_of.__getitem__)
        idx = _ranges([starts[e] for e in experts], [rows[e] for e in experts]).to(dev)
        slot_rows = [0] * len(self.slot_expert)
        for e in experts:
            slot_rows[self.slot_of[e]] = rows[e]
        y = self.pool.compute_sorted(x_sorted.index_select(0, idx), torch.tensor(slot_rows).to(dev))
        out.index_copy_(0, idx, y.to(out.dtype))

    def _start_cpu(self, x_sorted, cpu: list[int], starts, rows):
        if not cpu:
            return None
        rt, cuda = self.rt, self.rt.device.type == "cuda"
        idx = _ranges([starts[e] for e in cpu], [rows[e] for e in cpu])
        rt.counters.cpu_experts += len(cpu)
        rt.counters.rows_cpu += idx.numel()
        x_cpu = x_sorted.index_select(0, idx.to(x_sorted.device)).to("cpu")
        y_cpu = torch.empty(x_cpu.shape[0], self.hidden, dtype=x_sorted.dtype, pin_memory=cuda)
        items, pos = [], 0
        for e in cpu:
            items.append((e, pos, rows[e]))
            pos += rows[e]
        chunks = split_contiguous(items, rt.threads)
        futures = [rt.pool.submit(self._cpu_work, x_cpu, y_cpu, chunk) for chunk in chunks]
        return idx, y_cpu, futures

    def _finish_cpu(self, job: tuple[torch.Tensor, torch.Tensor, list[Future]], out) -> None:
        idx, y_cpu, futures = job
        for f in futures:
            f.result()  # re-raises a worker's error here
        dev = self.rt.device
        # Pinned y_cpu: an async upload; the caching host allocator keeps it alive until done.
        out.index_copy_(0, idx.to(dev), y_cpu.to(dev, non_blocking=True).to(out.dtype))

    def _cpu_work(self, x: torch.Tensor, y: torch.Tensor, chunk) -> None:
        """One worker's run of experts: rows [first start, last end) of x, in expert order."""
        with torch.no_grad():  # grad mode is per thread
            if self.int8 is not None and self.rt.int8_active:
                for e, start, n in chunk:
                    y[start : start + n] = self.int8.compute(e, x[start : start + n])
                return
            # Few Python steps per worker: a thread that keeps re-taking the GIL stalls the others.
            counts = torch.zeros(self.num_experts, dtype=torch.long)
            for e, _, n in chunk:
                counts[e] = n
            lo, hi = chunk[0][1], chunk[-1][1] + chunk[-1][2]
            y[lo:hi] = self.masters.compute_sorted(x[lo:hi], counts)
