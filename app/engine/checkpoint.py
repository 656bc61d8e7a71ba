"""Checkpoint IO for LLaDA2.0 MoE model folders (Hugging Face layout, safetensors only).

Reads `model.safetensors`, or shards listed in `model.safetensors.index.json`, tensor by tensor
through safetensors' memory map, so a 32 GB checkpoint is never held twice. Accepts both expert
layouts seen in the wild (../shared/spec/llada2_moe.md §2 per-expert tensors, §8 fused tensors
under `model.language_model.*`). Loading is strict: missing, unexpected and mis-shaped tensors
are reported by name. Pickle files are refused — they can run code when opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from app.engine.config import LLaDA2MoeConfig
from app.engine.model import LLaDA2MoeModelLM

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_PER_EXPERT = re.compile(
    r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$"
)

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)


class CheckpointError(ValueError):
    """The model folder's weights cannot be loaded; the message names the file and tensors."""


@dataclass(frozen=True)
class TensorTarget:
    """Where a checkpoint tensor goes: a parameter name, plus an expert row for per-expert files."""

    name: str
    expert: int | None = None


def canonical_name(key: str) -> TensorTarget:
    """Map a checkpoint key (either layout) to our parameter name (the fused HF names)."""
    if key.startswith("model.language_model."):  # LLaDA2.0-Uni fused file (spec §8)
        key = "model." + key[len("model.language_model.") :]
    elif key == "model.lm_head.weight":
        key = "lm_head.weight"
    match = _PER_EXPERT.match(key)
    if match:
        return TensorTarget(f"{match.group(1)}.{match.group(3)}", int(match.group(2)))
    return TensorTarget(key)


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a model folder, in load order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder; expected a model folder with config.json")
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: unreadable shard index ({exc})") from exc
        names = sorted(set(weight_map.values()))
        _refuse_pickles([folder / n for n in names])
        files = [folder / n for n in names]
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{index}: lists shard {f.name}, which is not in {folder}")
        return files
    single = folder / SINGLE_NAME
    if single.is_file():
        return [single]
    shards = sorted(folder.glob("model*.safetensors"))
    if shards:
        return shards
    _refuse_pickles(sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES))
    raise CheckpointError(f"{folder}: no {SINGLE_NAME} or {INDEX_NAME}; weights are missing")


def _refuse_pickles(paths: list[Path]) -> None:
    pickles = [p for p in paths if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise CheckpointError(
            f"{pickles[0]}: pickle weights are refused (opening them can run arbitrary code). "
            "Convert the checkpoint to safetensors first, e.g. with "
            "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')` "
            "on a machine you trust."
        )


def iter_checkpoint(files: list[Path]) -> Iterator[tuple[Path, str, Callable[[], torch.Tensor]]]:
    """Yield (file, key, loader) for every tensor; the loader reads it from the memory map."""
    for path in files:
        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
        with handle as f:
            for key in f.keys():
                yield path, key, _tensor_loader(f, path, key)


def _tensor_loader(f, path: Path, key: str) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        try:
            return f.get_tensor(key)
        except Exception as exc:
            raise CheckpointError(f"{path}: tensor {key!r} cannot be read ({exc})") from exc

    return load


def expected_tensors(model: LLaDA2MoeModelLM) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers that a checkpoint must provide (tied weights once)."""
    tensors = dict(model.state_dict(keep_vars=True))
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def load_into(model: LLaDA2MoeModelLM, folder: str | Path, progress: ProgressFn | None = None):
    """Fill an allocated model from the folder's safetensors; strict, errors list names."""
    files = weight_files(folder)
    total = sum(p.stat().st_size for p in files)
    expected = expected_tensors(model)
    filled_experts: dict[str, set[int]] = {}
    seen: set[str] = set()
    unexpected: list[str] = []
    misshaped: list[str] = []
    done = 0
    with torch.no_grad():
        for path, key, load in iter_checkpoint(files):
            target = canonical_name(key)
            dest = expected.get(target.name)
            if dest is None:
                unexpected.append(f"{key} ({path.name})")
                continue
            tensor = load()
            want = dest.shape if target.expert is None else dest.shape[1:]
            if target.expert is not None and not 0 <= target.expert < dest.shape[0]:
                unexpected.append(f"{key} ({path.name}: expert index out of range)")
                continue
            if tuple(tensor.shape) != tuple(want):
                misshaped.append(
                    f"{key} ({path.name}): checkpoint {list(tensor.shape)}, model {list(want)}"
                )
                continue
            if target.expert is None:
                dest.copy_(tensor)
                seen.add(target.name)
            else:
                dest[target.expert].copy_(tensor)
                filled_experts.setdefault(target.name, set()).add(target.expert)
            done += tensor.numel() * tensor.element_size()
            if progress is not None:
                progress(min(done, total), total)
    missing = _missing_names(expected, seen, filled_experts)
    if missing or unexpected or misshaped:
        raise CheckpointError(_strict_report(Path(folder), missing, unexpected, misshaped))
    if progress is not None:
        progress(total, total)


def _missing_names(expected, seen, filled_experts) -> list[str]:
    missing = []
    for name, tensor in expected.items():
        if name in seen:
            continue
        got = filled_experts.get(name)
        if got is None:
            missing.append(name)
        elif len(got) != tensor.shape[0]:
            prefix, proj = name.rsplit(".", 1)
            missing += [
                f"{prefix}.{e}.{proj}.weight" for e in range(tensor.shape[0]) if e not in got
            ]
    return missing


def _strict_report(folder: Path, missing, unexpected, misshaped) -> str:
    def listing(title: str, names: list[str]) -> str:
        shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
        return f"\n  {title}: {shown}"

    text = f"{folder}: checkpoint does not match config.json"
    if missing:
        text += listing("missing tensors", missing)
    if unexpected:
        text += listing("unexpected tensors", unexpected)
    if misshaped:
        text += listing("wrong shapes", misshaped)
    return text


def build_empty(config: LLaDA2MoeConfig, dtype: torch.dtype, device) -> LLaDA2MoeModelLM:
    """The module skeleton on the meta device, then each tensor allocated once on `device`."""
    with torch.device("meta"):
        model = LLaDA2MoeModelLM(config, dtype=dtype)
    model = model.to_empty(device=device)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.word_embeddings.weight
    return model


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: ProgressFn | None = None,
) -> LLaDA2MoeModelLM:
    """Load a model folder (config.json + safetensors) for inference."""
    config = LLaDA2MoeConfig.from_file(path)
    model = build_empty(config, dtype, torch.device(device))
    load_into(model, path, progress)
    return model.eval().requires_grad_(False)


def save_model(
    model: LLaDA2MoeModelLM,
    folder: str | Path,
    layout: str = "fused",
    max_shard_bytes: int | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write config.json + safetensors. layout: "fused" ([E, …] tensors) or "per_expert"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in expected_tensors(model).items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        if layout == "per_expert" and ".mlp.experts." in name:
            prefix, proj = name.rsplit(".", 1)
            for e in range(tensor.shape[0]):
                tensors[f"{prefix}.{e}.{proj}.weight"] = tensor[e].contiguous()
        else:
            tensors[name] = tensor.contiguous()
    if layout not in ("fused", "per_expert"):
        raise ValueError(f"unknown layout {layout!r}")
    shards = _split(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], str(folder / SINGLE_NAME), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    (folder / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _split(tensors: dict[str, torch.Tensor], limit: int | None) -> list[dict[str, torch.Tensor]]:
    if not limit:
        return [tensors]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards
