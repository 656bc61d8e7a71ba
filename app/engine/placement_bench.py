"""`unmask bench placement`: the 1024-token image loop under an accelerator budget, in one run:
expert placement (placement.py) vs the same engine with everything on the device vs accelerate's
`dispatch_model` with an `infer_auto_device_map` under the same budget.

On a CPU-only machine the "device" is the CPU as well: the budget is simulated (a share of the
experts in slots) so the slot pool, copies, copy-vs-compute and the CPU thread pool all run, and
the header says the timings show the machinery's overhead, not what a GPU would gain.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from app.engine.bench import LoopTiming, image_loop, progress
from app.engine.moe import expert_kernel
from app.engine.placement import (
    DEFAULT_MARGIN,
    GIB,
    MIB,
    PlacementOptions,
    apply_placement,
    kv_cache_bytes,
    model_sizes,
    remove_placement,
)
from app.engine.presets import config_for, random_model
from app.engine.sync import synchronize

# accelerate's offload hooks load a submodule's weights when its own forward runs; MoeBlock runs
# its experts through compute_sorted, not forward, so without this the offloaded experts stay on
# the meta device and compute garbage (measured: what the first GPU run timed). The whole block
# loads at its forward instead, as a whole-layer offload does.
ACCELERATE_PRELOAD = ["MoeBlock"]


@dataclass
class BenchRow:
    timing: LoopTiming
    note: str = ""
    stats: dict | None = None


class _Dispatched(nn.Module):
    """The loop reads model.device from lm_head, which accelerate may leave on meta: pin it."""

    def __init__(self, model, device: torch.device):
        super().__init__()
        self.inner, self.config, self.dtype, self.device = model, model.config, model.dtype, device

    def expert_counts(self):
        return self.inner.expert_counts()

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def _time(name: str, model, device: torch.device, image_tokens: int, repeats: int,
          after_warmup=None, max_forwards: int | None = None) -> LoopTiming:
    """The loop's time; with max_forwards, its first forwards only (after a shorter warm-up)."""
    image_loop(model, prompt_len=64, image_tokens=64, use_cache=True, cfg=True,
               max_forwards=None if max_forwards is None else 2)  # warm-up
    if after_warmup is not None:
        after_warmup()
    times, forwards = [], 0
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        forwards = image_loop(model, prompt_len=64, image_tokens=image_tokens, use_cache=True,
                              cfg=True, max_forwards=max_forwards)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return LoopTiming(name, statistics.median(times), forwards)


def _loop_forwards(image_tokens: int) -> int:
    """Forwards of the full loop: 8 steps for each 32-token block (the 64-token prompt fills two)."""
    return -(-image_tokens // 32) * 8


def _accelerate_row(model, device: torch.device, weight_budget: int | None, image_tokens: int,
                    repeats: int, max_forwards: int | None = None,
                    reference: torch.Tensor | None = None) -> BenchRow:
    """accelerate's dispatch under the budget. max_forwards: time the loop's first forwards and
    scale to the whole loop (every forward streams the same offloaded layers; on a GPU the full
    1024-token loop would take many minutes)."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.hooks import remove_hook_from_module
    from accelerate.utils import get_max_memory

    cpu_mem = get_max_memory()["cpu"]
    if device.type == "cuda":
        gpu = weight_budget if weight_budget is not None else torch.cuda.mem_get_info(device)[0]
        max_memory = {device.index or 0: max(0, gpu), "cpu": cpu_mem}
    else:
        max_memory = {"cpu": cpu_mem}
    device_map = infer_auto_device_map(model, max_memory=max_memory,
                                       no_split_module_classes=["DecoderLayer"])
    offloaded = sum(1 for d in device_map.values() if d in ("cpu", "disk"))
    if device.type == "cuda":
        note = f"{offloaded} of {len(device_map)} modules offloaded to the CPU, streamed per forward"
        dispatch_model(model, device_map, main_device=device, preload_module_classes=ACCELERATE_PRELOAD)
    else:
        note = "CPU run: hooks only, nothing to offload"
        quiet = logging.getLogger("accelerate.big_modeling")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its "offloaded to the cpu" warning is moot on a CPU run
        try:
            dispatch_model(model, device_map, force_hooks=True, preload_module_classes=ACCELERATE_PRELOAD)
        finally:
            quiet.setLevel(level)
    try:
        if reference is not None:
            note += "; " + _agreement(_probe(_Dispatched(model, device), device), reference)
        timing = _time("accelerate dispatch_model", _Dispatched(model, device), device,
                       image_tokens, repeats, max_forwards=max_forwards)
    finally:
        remove_hook_from_module(model, recurse=True)
    full = _loop_forwards(image_tokens)
    if timing.forwards < full:
        note += (f"; timed over the loop's first {timing.forwards} forwards, loop time = "
                 f"ms/forward x {full}")
        timing = LoopTiming(timing.name, timing.seconds * full / timing.forwards, full)
    return BenchRow(timing, note)


class _ReportingRows(list):
    """The bench's rows; each one is reported on stderr as it lands."""

    def append(self, row: BenchRow) -> None:
        super().append(row)
        progress(row.timing, row.note)


@dataclass
class _Setup:
    scale: str
    dev: torch.device
    dtype: torch.dtype
    image_tokens: int
    repeats: int
    accelerate_forwards: int | None
    options: PlacementOptions
    header: str = ""
    kv: int = 0
    workspace: int = 0
    whole: int = 0


def run_placement_bench(
    scale: str,
    device: str | None = None,
    budget_gib: float | None = None,
    *,
    dtype: torch.dtype | None = None,
    image_tokens: int = 1024,
    repeats: int = 1,
    int8: bool = False,
    policy: str = "auto",
    cpu_fraction: float = 0.25,
    skip_accelerate: bool = False,
    threads: int | None = None,
    accelerate_forwards: int | None = None,
) -> str:
    """Times the image loop (prompt 64, block 32, 8 steps, CFG) three ways; returns a table.

    budget_gib: accelerator budget (None: free memory - margin). On a CPU device the budget is
    simulated: dense parts + KV cache + `cpu_fraction` of the experts, unless budget_gib is smaller.
    threads: torch CPU threads for every variant and the placement's CPU pool (default: current).
    accelerate_forwards: time accelerate over the loop's first N forwards only (see _accelerate_row).
    """
    if accelerate_forwards is not None and accelerate_forwards < 1:
        raise ValueError(f"accelerate_forwards must be at least 1, not {accelerate_forwards}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    previous = torch.get_num_threads()
    threads = threads or previous
    setup = _Setup(scale, dev, dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32),
                   image_tokens, repeats, accelerate_forwards,
                   PlacementOptions(int8_cpu=int8, policy=policy, cpu_threads=threads,
                                    kv_tokens=-(-(64 + image_tokens) // 32) * 32))
    _budget(setup, budget_gib, cpu_fraction, threads)
    torch.set_num_threads(threads)  # one setting for every variant
    try:
        rows = _variants(setup, skip_accelerate)
        return format_placement_table(rows, f"{setup.header}; routed experts: {expert_kernel(dev)}")
    finally:
        torch.set_num_threads(previous)


def _budget(setup: _Setup, budget_gib: float | None, cpu_fraction: float, threads: int) -> None:
    config, opts = config_for(setup.scale), setup.options
    sizes = model_sizes(config, setup.dtype)
    setup.kv = kv_cache_bytes(config, opts.kv_tokens, 2, setup.dtype)
    experts = len(sizes.moe_layers) * sizes.num_experts
    setup.whole = sizes.dense_bytes + setup.kv + experts * sizes.expert_bytes
    if setup.dev.type == "cuda":
        opts.budget = int(budget_gib * GIB) if budget_gib is not None else "auto"
        setup.workspace = opts.workspace_bytes
        shown = "auto" if budget_gib is None else f"{budget_gib:g} GiB"
        setup.header = (f"bench placement: scale {setup.scale}, {torch.cuda.get_device_name(setup.dev)}, "
                        f"{setup.dtype}, budget {shown} (whole model {setup.whole / GIB:.2f} GiB)")
    else:
        simulated = sizes.dense_bytes + setup.kv + int(cpu_fraction * experts) * sizes.expert_bytes
        budget = min(simulated, int(budget_gib * GIB) if budget_gib is not None else simulated)
        opts.budget, opts.workspace_bytes = budget, 0
        setup.header = (
            f"bench placement: scale {setup.scale}, CPU-SCALE RUN ({threads} threads), {setup.dtype}: the "
            "'device' is the CPU too, so these timings show the slot/copy/thread-pool machinery's "
            f"overhead, not GPU gains; simulated budget {budget / MIB:.2f} MiB (whole model "
            f"{setup.whole / MIB:.2f} MiB)"
        )
    setup.header += (
        f"\n{setup.image_tokens} image tokens, prompt 64, block 32, 8 steps/block, CFG; median of "
        f"{setup.repeats}; policy {opts.policy}, int8 CPU experts {'on' if opts.int8_cpu else 'off'}"
    )


def _variants(setup: _Setup, skip_accelerate: bool) -> list[BenchRow]:
    dev, args = setup.dev, (setup.dev, setup.image_tokens, setup.repeats)
    torch.manual_seed(0)
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else None
    fits = free is None or setup.whole + DEFAULT_MARGIN <= free
    # Drawn on the device where it fits (seconds, not minutes, for `mini`), then moved as needed.
    model = random_model(config_for(setup.scale), seed=0, dtype=setup.dtype,
                         device=dev if fits else "cpu")
    rows = _ReportingRows()
    reference = None  # the all-on-device logits of a fixed input, which every variant must match

    # 1. the same engine with everything on the device
    if not fits:
        rows.append(BenchRow(LoopTiming("same engine, all on device", float("nan"), 0),
                             f"does not fit: {setup.whole / GIB:.1f} GiB > {free / GIB:.1f} GiB free"))
    else:
        model.to(dev)
        reference = _probe(model, dev)
        rows.append(BenchRow(_time("same engine, all on device", model, *args)))
        model.to("cpu")
        _empty_cache(dev)

    # 2. expert placement under the budget
    runtime = apply_placement(model, setup.options, device=dev)
    plan = runtime.plan
    try:
        agreement = "" if reference is None else "; " + _agreement(_probe(model, dev), reference)
        timing = _time("expert placement", model, *args, after_warmup=runtime.reset_stats)
        stats = runtime.stats()
    finally:
        remove_placement(model)
    _empty_cache(dev)
    note = f"{plan.resident_total}/{plan.experts_total} experts in slots{agreement}"
    if stats["int8_logit_error"]:
        note += f", int8 logit rel. RMS error {stats['int8_logit_error']['rel_rms']:.2%}"
    rows.append(BenchRow(timing, note, stats))

    # 3. accelerate under the same budget (weights only: it has no notion of KV cache/workspace)
    if not skip_accelerate:
        budget = plan.budget_bytes
        weights = None if budget is None else budget - setup.kv - setup.workspace
        rows.append(_accelerate_row(model, dev, weights, setup.image_tokens, setup.repeats,
                                    setup.accelerate_forwards, reference))
    return rows


@torch.no_grad()
def _probe(model, device: torch.device) -> torch.Tensor:
    """Logits of a fixed 64-token input (no cache): every variant must compute the same model."""
    ids = torch.randint(0, model.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(1))
    return model(ids.to(device)).float().cpu()


def _agreement(logits: torch.Tensor, reference: torch.Tensor) -> str:
    diff = (logits - reference).abs().max() / reference.abs().max().clamp_min(1e-30)
    same = (logits.argmax(-1) == reference.argmax(-1)).float().mean()
    return f"logits vs all on device: max |diff| {diff:.1e} of max |logit|, argmax same {same:.0%}"


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def format_placement_table(rows: list[BenchRow], header: str) -> str:
    base = rows[0].timing.seconds
    lines = [header, f"{'variant':<30}{'loop s':>9}{'forwards':>10}{'ms/fwd':>9}{'vs all-on-dev':>15}"
             f"{'copied/step':>15}{'slot hits':>11}{'CPU FLOPs':>11}  note"]
    for row in rows:
        t, s = row.timing, row.stats
        ratio = base / t.seconds if t.seconds == t.seconds and base == base else float("nan")
        extra = (f"{_size(s['bytes_copied_per_step']):>15}{s['slot_hit_rate']:>11.1%}"
                 f"{s['cpu_flop_share']:>11.1%}") if s else f"{'-':>15}{'-':>11}{'-':>11}"
        lines.append(f"{t.name:<30}{t.seconds:>9.2f}{t.forwards:>10}{t.ms_per_forward:>9.1f}"
                     f"{ratio:>14.2f}x{extra}  {row.note}")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"
