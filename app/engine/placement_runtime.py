"""Expert placement, runtime: installs the per-layer executors (placement_exec.py) on a model.

`apply_placement` moves the dense parts to the accelerator, keeps the routed experts' masters in
(pinned) CPU memory, builds each layer's slot pool from the plan, calibrates the cost model and
installs the executors; `PlacementRuntime` keeps the heat, the step-in-block count that the reuse
credit needs, and the stats; `remove_placement` undoes all of it.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from app.engine.model import LLaDA2MoeModelLM
from app.engine.placement import (
    ExpertHeat,
    HeatStore,
    PlacementError,
    PlacementOptions,
    PlacementPlan,
    plan_for_config,
)
from app.engine.placement_exec import (
    CostModel,
    Counters,
    LayerPlacement,
    physical_cores,
    split_contiguous,
)
from app.engine.sync import synchronize


def calibrate(layer: LayerPlacement) -> CostModel:
    """Measure copy bandwidth (masters -> device, like a slot fill) and the CPU path's time per
    expert at 1 and 32 rows, run through the real thread pool. Takes milliseconds."""
    rt, m = layer.rt, layer.masters
    k = min(4, layer.num_experts)
    src = m.gate_proj.detach()[:k]
    dst = torch.empty(src.shape, dtype=src.dtype, device=rt.device)
    best = float("inf")
    for _ in range(3):
        synchronize(rt.device)
        t = time.perf_counter()
        dst.copy_(src, non_blocking=True)
        synchronize(rt.device)
        best = min(best, time.perf_counter() - t)
    copy_bw = src.nbytes / max(best, 1e-9)

    def per_expert(n: int) -> float:
        jobs = min(4 * rt.threads, layer.num_experts)  # distinct experts, in order, as in a call
        x = torch.randn(jobs * n, layer.hidden, dtype=m.gate_proj.dtype)
        y = torch.empty_like(x)
        items = [(i, i * n, n) for i in range(jobs)]
        t = time.perf_counter()
        for f in [rt.pool.submit(layer._cpu_work, x, y, c) for c in split_contiguous(items, rt.threads)]:
            f.result()
        return (time.perf_counter() - t) / jobs

    t1 = min(per_expert(1) for _ in range(2))
    t32 = min(per_expert(32) for _ in range(2))
    per_row = max(0.0, (t32 - t1) / 31)
    return CostModel(copy_bw, max(1e-7, t1 - per_row), per_row)


class PlacementRuntime:
    """A placed model: slot pools, masters, thread pool, stats. Made by `apply_placement`."""

    def __init__(self, model: LLaDA2MoeModelLM, plan: PlacementPlan, device: torch.device,
                 options: PlacementOptions, heat: ExpertHeat, store: HeatStore | None):
        self.model, self.plan, self.device, self.options = model, plan, device, options
        self.policy, self.heat, self.store = options.policy, heat, store
        self.threads = options.cpu_threads or physical_cores()
        # CPU threads = physical cores: on a CPU device as torch's intra-op threads; with an
        # accelerator as pool workers, each single-threaded (workers x cores threads would thrash).
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads if device.type == "cpu" else 1)
        # Each worker sets its OpenMP/MKL threads explicitly: a fresh thread otherwise gets the
        # library default team (all cores) for matmuls, which thrashes (measured: 20 ms a call).
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="unmask-experts",
                                       initializer=torch.set_num_threads,
                                       initargs=(torch.get_num_threads(),))
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.counters = Counters()
        self.force_cpu, self.track_heat, self.int8_active = False, True, plan.int8_cpu
        self.step_in_block = -1
        self.origin = model.device
        self.layers: list[LayerPlacement] = []
        self._hook = None
        self.int8_error: dict | None = None
        model._placement_runtime = self
        try:  # a failure half-way (e.g. out of memory for the slots) puts everything back
            pin = device.type == "cuda" and plan.resident_total < plan.experts_total
            self._place_weights(device, pin=pin)
            blocks = model.moe_blocks()
            self.layers = [LayerPlacement(self, i, b.experts, plan.resident[i]) for i, b in enumerate(blocks)]
            self.cost = options.cost or (calibrate(self.layers[0]) if self.layers else CostModel(1, 1, 1))
            for block, layer in zip(blocks, self.layers, strict=True):
                block.executor = layer
            self._hook = model.register_forward_pre_hook(self._on_forward, with_kwargs=True)
            if plan.int8_cpu and options.report_int8_error:
                self.int8_error = self.measure_int8_error()
        except BaseException:
            self.close()
            raise

    def _place_weights(self, device: torch.device, pin: bool) -> None:
        """Dense parameters and buffers to `device`; routed experts to the CPU (pinned: async)."""
        expert_ids = {id(p) for b in self.model.moe_blocks() for p in b.experts.parameters()}
        for p in self.model.parameters():
            if id(p) in expert_ids:
                data = p.data.to("cpu")
                p.data = data.pin_memory() if pin and not data.is_pinned() else data
            else:
                p.data = p.data.to(device)
        for module in self.model.modules():
            for name, buf in module._buffers.items():
                if buf is not None:
                    module._buffers[name] = buf.to(device)

    def _on_forward(self, module, args, kwargs) -> None:
        """Counts steps; a KV-cache write starts a new block (else every steps_per_block)."""
        self.counters.steps += 1
        new_block = kwargs.get("cache_write", 0) > 0
        if new_block or self.step_in_block + 1 >= self.options.steps_per_block:
            self.step_in_block = 0
        else:
            self.step_in_block += 1
        every = self.options.heat_save_every
        if self.store is not None and every and self.counters.steps % every == 0:
            self.save_heat()

    def uses_left(self) -> int:
        """Forwards left in this block, this one included: the reuse a copy is credited with."""
        return max(1, self.options.steps_per_block - max(0, self.step_in_block))

    @torch.no_grad()
    def measure_int8_error(self, tokens: int = 64, seed: int = 0) -> dict:
        """Logits with every routed expert on the int8 CPU path vs the same path unquantised."""
        if not self.plan.int8_cpu:
            raise PlacementError("int8 CPU experts are off in this plan")
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.model.config.vocab_size, (1, tokens), generator=gen)
        saved = (dataclasses.replace(self.counters), self.step_in_block,
                 [layer.recent.clone() for layer in self.layers])
        self.force_cpu, self.track_heat = True, False
        try:
            self.int8_active = False
            ref = self.model(ids.to(self.device)).float()
            self.int8_active = True
            got = self.model(ids.to(self.device)).float()
        finally:
            self.force_cpu, self.track_heat, self.int8_active = False, True, self.plan.int8_cpu
            self.counters, self.step_in_block = saved[0], saved[1]
            for layer, recent in zip(self.layers, saved[2], strict=True):
                layer.recent = recent
        diff = got - ref
        return {
            "tokens": tokens,
            "scope": "every routed expert through the int8 CPU path (worst case)",
            "max_abs": float(diff.abs().max()),
            "rel_rms": float(diff.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)),
            "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).float().mean()),
        }

    def stats(self) -> dict:
        c = self.counters
        return {
            "device": str(self.device),
            "policy": self.policy,
            "steps": c.steps,
            "bytes_copied": c.bytes_copied,
            "bytes_copied_per_step": c.bytes_copied / max(1, c.steps),
            "copies": c.copies,
            "evictions": c.evictions,
            "slot_hit_rate": c.hits / c.activations if c.activations else 1.0,
            "expert_activations": c.activations,
            "cpu_experts": c.cpu_experts,
            "cpu_flop_share": c.rows_cpu / c.rows if c.rows else 0.0,
            "slots_per_layer": [len(layer.slot_expert) for layer in self.layers],
            "resident_per_layer": [sum(e >= 0 for e in layer.slot_expert) for layer in self.layers],
            "resident_experts": [sorted(e for e in layer.slot_expert if e >= 0) for layer in self.layers],
            "int8_cpu": self.plan.int8_cpu,
            "int8_logit_error": self.int8_error,
            "cpu_threads": self.threads,
            "cost_model": dataclasses.asdict(self.cost),
        }

    def reset_stats(self) -> None:
        self.counters = Counters()

    def save_heat(self) -> None:
        if self.store is not None and self.options.heat_key:
            self.store.save(self.options.heat_key, self.model.config, self.heat)

    def close(self) -> None:
        """Undo everything `apply_placement` did (see remove_placement)."""
        if self._hook is not None:
            self._hook.remove()
        for block in self.model.moe_blocks():
            block.executor = None
        self.pool.shutdown(wait=True)
        self.save_heat()
        synchronize(self.device)  # no copy or kernel still touches a slot
        for layer in self.layers:
            layer.pool = None  # frees the slot memory
        torch.set_num_threads(self._torch_threads)
        self._place_weights(self.origin, pin=False)
        for block in self.model.moe_blocks():
            for p in block.experts.parameters():
                data = p.data.to(self.origin)
                if self.device.type == "cuda" and data.is_pinned():  # give page-locked RAM back
                    data = torch.empty(data.shape, dtype=data.dtype).copy_(data)
                p.data = data
        del self.model._placement_runtime


def apply_placement(model: LLaDA2MoeModelLM, plan_or_options=None, device=None, *,
                    options: PlacementOptions | None = None) -> PlacementRuntime:
    if getattr(model, "_placement_runtime", None) is not None:
        raise PlacementError("this model is already placed; call remove_placement first")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    plan = plan_or_options if isinstance(plan_or_options, PlacementPlan) else None
    if isinstance(plan_or_options, PlacementOptions):
        options = plan_or_options
    options = options or PlacementOptions(int8_cpu=plan.int8_cpu if plan else False)
    store = (options.heat_store or HeatStore()) if options.heat_key else None
    heat = store.load(options.heat_key, model.config) if store else None
    blocks = model.moe_blocks()
    if heat is None:
        heat = ExpertHeat.uniform(len(blocks), model.config.num_experts or 0)
    if plan is None:
        plan = plan_for_config(
            model.config, options.budget, model.dtype, device=device, heat=heat,
            experts_on_cpu=options.experts_on_cpu, int8_cpu=options.int8_cpu,
            kv_tokens=options.kv_tokens, kv_rows=options.kv_rows,
            workspace_bytes=options.workspace_bytes, margin_bytes=options.margin_bytes,
        )
    if len(plan.resident) != len(blocks) or plan.num_experts != (model.config.num_experts or 0) or any(
        len(set(r)) != len(r) or not all(0 <= e < plan.num_experts for e in r) for r in plan.resident
    ):
        raise PlacementError("the plan does not match this model's MoE layers/experts")
    return PlacementRuntime(model, plan, device, options, heat, store)


def remove_placement(model: LLaDA2MoeModelLM) -> None:
    runtime = getattr(model, "_placement_runtime", None)
    if runtime is None:
        raise PlacementError("this model has no placement to remove")
    runtime.close()
