"""Expert placement, planning half: which routed experts live in a GPU budget, from config alone.

LLaDA2.0-Uni's backbone is 32.6 GB in bf16; most of it (94%) is routed experts, of which each token
uses 8 of 256 per layer. So the dense parts (embeddings, attention, routers, shared experts, norms,
lm_head) and the KV cache stay on the accelerator, and the routed experts that fit go to a per-layer
GPU slot pool, hottest first; every expert also has a master copy in (pinned) CPU memory, from
which non-resident experts are copied into a slot or computed on the CPU (placement_exec.py).

Planning needs no weights: sizes come from a meta-device skeleton (accelerate), so `unmask info`
can show the plan of a 16B model on any laptop. "Heat" is the measured routing count per layer and
expert, kept per model in the user data dir; until measured, every expert is equally hot.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from app.engine.config import LLaDA2MoeConfig

if TYPE_CHECKING:
    from app.engine.model import LLaDA2MoeModelLM
    from app.engine.placement_exec import CostModel
    from app.engine.placement_runtime import PlacementRuntime

GIB = 1 << 30
MIB = 1 << 20
# Kept free by "auto": the CUDA context, allocator fragmentation and other apps' allocations.
DEFAULT_MARGIN = GIB
# Activations of one forward (hidden states, router scores, block logits) at image-loop sizes.
DEFAULT_WORKSPACE = 512 * MIB
# KV cache reserved in the plan: a 1024-token image + prompt, with the CFG row.
DEFAULT_KV_TOKENS, DEFAULT_KV_ROWS = 2048, 2


class PlacementError(ValueError):
    """The budget cannot hold the parts that must stay on the accelerator."""


def parse_budget(budget: str | int | float | None) -> int | str | None:
    """"12GiB", "12GB", "512MiB", "12" (GiB) or an int of bytes -> bytes; "auto" and None pass."""
    if budget is None or budget == "auto":
        return budget
    if isinstance(budget, bool):
        raise PlacementError(f"budget {budget!r}: give a size such as 12GiB")
    if isinstance(budget, int):
        return budget
    if isinstance(budget, float):
        return int(budget * GIB)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?i?B?)?\s*", str(budget), re.IGNORECASE)
    if not match:
        raise PlacementError(f"budget {budget!r}: expected e.g. 12GiB, 12GB, 512MiB or auto")
    unit = (match.group(2) or "GiB").upper().rstrip("B")
    scale = {"": 1, "K": 1e3, "KI": 1 << 10, "M": 1e6, "MI": MIB, "G": 1e9, "GI": GIB,
             "T": 1e12, "TI": 1 << 40}[unit]
    return int(float(match.group(1)) * scale)


def auto_budget(device: torch.device, margin: int = DEFAULT_MARGIN) -> int | None:
    """Free accelerator memory minus a margin; None (no limit) on a CPU-only machine."""
    if device.type != "cuda":
        return None
    from accelerate.utils import get_max_memory  # asks torch.cuda.mem_get_info per device

    free = get_max_memory().get(device.index or 0, 0)
    return max(0, free - margin)


@dataclass(frozen=True)
class ModelSizes:
    dense_bytes: int  # everything but the routed experts
    expert_bytes: int  # one routed expert (gate + up + down)
    moe_layers: tuple[int, ...]
    num_experts: int


def model_sizes(config: LLaDA2MoeConfig, dtype: torch.dtype) -> ModelSizes:
    """Byte sizes from a meta-device skeleton (no memory used, so any model size works)."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes

    from app.engine.model import LLaDA2MoeModelLM

    with init_empty_weights(include_buffers=True):
        skeleton = LLaDA2MoeModelLM(config, dtype=dtype)
    sizes = compute_module_sizes(skeleton)
    moe_layers = tuple(i for i in range(config.num_hidden_layers) if config.is_moe_layer(i))
    experts = sum(sizes[f"model.layers.{i}.mlp.experts"] for i in moe_layers)
    per_expert = experts // max(1, len(moe_layers) * (config.num_experts or 1))
    return ModelSizes(sizes[""] - experts, per_expert, moe_layers, config.num_experts or 0)


def kv_cache_bytes(config: LLaDA2MoeConfig, tokens: int, rows: int, dtype: torch.dtype) -> int:
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim
    return per_token * tokens * rows * torch.empty((), dtype=dtype).element_size()


def int8_expert_bytes(config: LLaDA2MoeConfig) -> int:
    """One expert as int8 weights plus fp32 per-output-channel scales."""
    h, im = config.hidden_size, config.moe_intermediate_size or 0
    return 3 * h * im + 4 * (2 * im + h)


# ---- heat ----------------------------------------------------------------------------------------


def config_hash(config: LLaDA2MoeConfig) -> str:
    """Identifies the architecture, so heat of one model folder never applies to another shape."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class ExpertHeat:
    """Routed rows per (MoE layer, expert) since measuring began; float64 [layers, E]."""

    counts: torch.Tensor

    @classmethod
    def uniform(cls, layers: int, experts: int) -> ExpertHeat:
        return cls(torch.zeros(layers, experts, dtype=torch.float64))

    @property
    def measured(self) -> bool:
        return bool(self.counts.sum() > 0)

    def update(self, layer: int, counts: torch.Tensor) -> None:
        self.counts[layer] += counts.to("cpu", torch.float64)

    def ranking(self) -> list[tuple[int, int]]:
        """(layer, expert) hottest first; ties go by expert index across layers, so uniform heat
        gives every layer the same share."""
        layers, experts = self.counts.shape
        heat = self.counts.tolist()
        keys = [(-heat[i][e], e, i) for i in range(layers) for e in range(experts)]
        return [(i, e) for _, e, i in sorted(keys)]

    def to_json(self) -> dict:
        return {"counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> ExpertHeat:
        return cls(torch.tensor(data["counts"], dtype=torch.float64))


class HeatStore:
    """JSON heat files in the user data dir, one per model folder name + config hash."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from app.paths import user_data_dir  # platformdirs, shared with the rest of the app

            root = user_data_dir() / "expert-heat"
        self.root = Path(root)

    def path(self, model_key: str, config: LLaDA2MoeConfig) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key).strip("._") or "model"
        return self.root / f"{safe}-{config_hash(config)}.json"

    def load(self, model_key: str, config: LLaDA2MoeConfig) -> ExpertHeat | None:
        path = self.path(model_key, config)
        try:
            heat = ExpertHeat.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: start uniform, it is only a hint
        layers = sum(config.is_moe_layer(i) for i in range(config.num_hidden_layers))
        return heat if tuple(heat.counts.shape) == (layers, config.num_experts) else None

    def save(self, model_key: str, config: LLaDA2MoeConfig, heat: ExpertHeat) -> Path:
        path = self.path(model_key, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"model": model_key, **heat.to_json()}), encoding="utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file
        return path


# ---- the plan ------------------------------------------------------------------------------------


@dataclass
class PlacementPlan:
    """Where every part goes. `resident[i]` lists the experts of the i-th MoE layer in GPU slots."""

    device: str
    dtype: str
    budget_bytes: int | None  # None: no limit (everything resident)
    dense_bytes: int
    kv_bytes: int
    workspace_bytes: int
    expert_bytes: int
    int8_expert_bytes: int
    num_experts: int
    moe_layers: list[int]
    resident: list[list[int]]
    int8_cpu: bool = False
    heat_measured: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def experts_total(self) -> int:
        return len(self.moe_layers) * self.num_experts

    @property
    def resident_total(self) -> int:
        return sum(len(r) for r in self.resident)

    @property
    def gpu_bytes(self) -> int:
        fixed = self.dense_bytes + self.kv_bytes + self.workspace_bytes
        return fixed + self.resident_total * self.expert_bytes

    @property
    def cpu_bytes(self) -> int:
        """Master copies of every routed expert (+ their int8 copies). Zero when all are resident
        on a CPU device, where the slots are the masters."""
        if self.device == "cpu" and self.resident_total == self.experts_total:
            return 0
        int8 = self.int8_expert_bytes if self.int8_cpu else 0
        return self.experts_total * (self.expert_bytes + int8)

    def summary(self) -> dict:
        """Plain data (JSON-ready) for the UI and `unmask info`."""
        data = asdict(self)
        data.update(
            resident_per_layer=[len(r) for r in self.resident],
            experts_total=self.experts_total,
            resident_total=self.resident_total,
            gpu_bytes=self.gpu_bytes,
            cpu_bytes=self.cpu_bytes,
        )
        return data

    def describe(self) -> str:
        budget = "no limit" if self.budget_bytes is None else _gib(self.budget_bytes)
        share = self.resident_total / max(1, self.experts_total)
        per_layer = [len(r) for r in self.resident]
        lines = [
            f"placement on {self.device} ({self.dtype}), budget {budget}",
            f"  dense parts (embeddings, attention, routers, shared experts, norms, lm_head): "
            f"{_gib(self.dense_bytes)}",
            f"  KV cache {_gib(self.kv_bytes)} + workspace {_gib(self.workspace_bytes)}",
            f"  routed experts: {self.experts_total} x {self.expert_bytes / MIB:.2f} MiB = "
            f"{_gib(self.experts_total * self.expert_bytes)}; {self.resident_total} in GPU slots "
            f"({share:.0%}), the rest computed on the CPU or copied in on demand",
            f"  slots per MoE layer: {_compact(per_layer)} "
            f"({'measured heat' if self.heat_measured else 'uniform: heat not measured yet'})",
            f"  on {self.device}: {_gib(self.gpu_bytes)}; CPU master copies: {_gib(self.cpu_bytes)}"
            + (f" (incl. int8 copies, {self.int8_expert_bytes / MIB:.2f} MiB/expert)"
               if self.int8_cpu else ""),
            f"  int8 CPU experts: {'on' if self.int8_cpu else 'off'}",
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= 64 * MIB else f"{n / MIB:.2f} MiB"


def _compact(values: list[int]) -> str:
    if values and all(v == values[0] for v in values):
        return f"{values[0]} in each of {len(values)}"
    return " ".join(map(str, values))


def plan_for_config(
    config: LLaDA2MoeConfig,
    budget: str | int | float | None = "auto",
    dtype: torch.dtype = torch.bfloat16,
    *,
    device: str | torch.device = "cuda",
    heat: ExpertHeat | None = None,
    experts_on_cpu: int | None = None,
    int8_cpu: bool = False,
    kv_tokens: int = DEFAULT_KV_TOKENS,
    kv_rows: int = DEFAULT_KV_ROWS,
    workspace_bytes: int = DEFAULT_WORKSPACE,
    margin_bytes: int = DEFAULT_MARGIN,
) -> PlacementPlan:
    """Plan without weights. budget: bytes, "12GiB", "auto" (free VRAM - margin) or None (no
    limit); experts_on_cpu overrides it with a count of experts to keep off the accelerator."""
    device = torch.device(device)
    sizes = model_sizes(config, dtype)
    n_layers, n_exp = len(sizes.moe_layers), sizes.num_experts
    total = n_layers * n_exp
    notes: list[str] = []
    kv = kv_cache_bytes(config, kv_tokens, kv_rows, dtype)
    parsed = parse_budget(budget)
    if parsed == "auto":
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PlacementError("budget auto needs a CUDA device here; give a size such as 12GiB")
        parsed = auto_budget(device, margin_bytes)
        if parsed is None:
            notes.append("CPU device: everything on the CPU")
    fixed = sizes.dense_bytes + kv + workspace_bytes
    if experts_on_cpu is not None:
        resident_total = max(0, total - experts_on_cpu)
    elif parsed is None:
        resident_total = total
    else:
        if parsed < fixed:
            raise PlacementError(
                f"budget {_gib(parsed)} is below what must stay on {device.type}: dense parts "
                f"{_gib(sizes.dense_bytes)} + KV cache {_gib(kv)} + workspace {_gib(workspace_bytes)}"
                f" = {_gib(fixed)}"
            )
        resident_total = min(total, (parsed - fixed) // max(1, sizes.expert_bytes))
    heat = heat if heat is not None else ExpertHeat.uniform(n_layers, n_exp)
    if tuple(heat.counts.shape) != (n_layers, n_exp):
        raise PlacementError(f"heat shape {tuple(heat.counts.shape)} != ({n_layers}, {n_exp})")
    resident: list[list[int]] = [[] for _ in range(n_layers)]
    for layer, expert in heat.ranking()[:resident_total]:
        resident[layer].append(expert)
    return PlacementPlan(
        device=str(device), dtype=str(dtype).removeprefix("torch."), budget_bytes=parsed,
        dense_bytes=sizes.dense_bytes, kv_bytes=kv, workspace_bytes=workspace_bytes,
        expert_bytes=sizes.expert_bytes, int8_expert_bytes=int8_expert_bytes(config),
        num_experts=n_exp, moe_layers=list(sizes.moe_layers),
        resident=[sorted(r) for r in resident], int8_cpu=int8_cpu, heat_measured=heat.measured,
        notes=notes,
    )


def describe_for_folder(
    folder: str | Path,
    budget: str | int | float | None = "auto",
    *,
    experts_on_cpu: int | None = None,
    int8_cpu: bool = False,
    dtype: torch.dtype = torch.bfloat16,
    store: HeatStore | None = None,
) -> str:
    """`unmask info MODEL --budget 12GiB`: the plan from config.json and any measured heat."""
    config = LLaDA2MoeConfig.from_file(folder)
    heat = (store or HeatStore()).load(Path(folder).resolve().name, config)
    plan = plan_for_config(config, budget, dtype, heat=heat, experts_on_cpu=experts_on_cpu,
                           int8_cpu=int8_cpu)
    return plan.describe()


# ---- options and the public entry points ---------------------------------------------------------


@dataclass
class PlacementOptions:
    """How `apply_placement` plans (when given no plan) and executes."""

    budget: str | int | float | None = "auto"  # see plan_for_config
    experts_on_cpu: int | None = None
    int8_cpu: bool = False  # int8 weight-only copies for the CPU path (per-channel scales)
    # "auto": cost model; "copy": copy into a slot whenever one can be freed; "cpu": never copy.
    policy: str = "auto"
    steps_per_block: int = 8  # reuse credit: routing is stable across the steps of a block
    cpu_threads: int | None = None  # None: physical cores
    kv_tokens: int = DEFAULT_KV_TOKENS
    kv_rows: int = DEFAULT_KV_ROWS
    workspace_bytes: int = DEFAULT_WORKSPACE
    margin_bytes: int = DEFAULT_MARGIN
    heat_key: str | None = None  # model folder name: heat is loaded from and saved under it
    heat_store: HeatStore | None = None
    heat_save_every: int = 256  # forwards between heat saves
    cost: CostModel | None = None  # None: calibrated at start
    report_int8_error: bool = True  # measure the int8 logit error at start

    def __post_init__(self) -> None:
        if self.policy not in ("auto", "copy", "cpu"):
            raise PlacementError(f"policy {self.policy!r}: choose auto, copy or cpu")


def apply_placement(
    model: LLaDA2MoeModelLM,
    plan_or_options: PlacementPlan | PlacementOptions | None = None,
    device: str | torch.device | None = None,
    *,
    options: PlacementOptions | None = None,
) -> PlacementRuntime:
    """Dense parts to `device` (default: cuda if present), experts into slots + CPU masters, an
    executor on every MoE block. Undo with `remove_placement(model)`."""
    from app.engine.placement_runtime import apply_placement as apply

    return apply(model, plan_or_options, device, options=options)


def remove_placement(model: LLaDA2MoeModelLM) -> None:
    """Uninstall the executors, save heat and put every weight back where it was before."""
    from app.engine.placement_runtime import remove_placement as remove

    remove(model)
