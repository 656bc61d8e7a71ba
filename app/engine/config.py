"""config.json of a LLaDA2.0 MoE model (`llada2_moe`), as the reference modeling code reads it.

Field names, defaults and meanings follow ../shared/spec/llada2_moe.md §1.1. Unknown fields
(the Uni extras such as `image_token_offset`, or our demo's `codec`) are kept in `extra`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Fields without a usable default: a config that lacks them cannot describe a model.
# num_key_value_heads defaults to 0 upstream, which would divide by zero (spec §1.1).
REQUIRED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)

MODEL_TYPES = ("llada2_moe", "llada2uni_moe", "llada2_uni")


class ConfigError(ValueError):
    """config.json is missing, unreadable or inconsistent; the message names the file and field."""


@dataclass
class LLaDA2MoeConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads (spec §1.1)
    intermediate_size: int | None = None
    hidden_act: str = "silu"
    use_qkv_bias: bool = False
    use_bias: bool = True  # the config class default really is True (spec §1.1)
    use_qk_norm: bool = True
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 16384
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    partial_rotary_factor: float = 0.5
    pad_token_id: int | None = 126081
    num_experts: int | None = 16
    num_shared_experts: int | None = 0
    num_experts_per_tok: int = 2
    n_group: int = 8
    topk_group: int = 4
    routed_scaling_factor: float = 2.5
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int = 0
    tie_word_embeddings: bool = False
    model_type: str = "llada2_moe"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, index: int) -> bool:
        return self.num_experts is not None and index >= self.first_k_dense_replace

    @property
    def shared_intermediate_size(self) -> int:
        return (self.moe_intermediate_size or 0) * (self.num_shared_experts or 0)

    @property
    def image_token_offset(self) -> int | None:
        return self.extra.get("image_token_offset")

    def special_id(self, name: str) -> int | None:
        """An id such as `eos_token_id` or `mask_token_id` from config.json, if present."""
        return self.extra.get(name)

    # ---- (de)serialisation -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> LLaDA2MoeConfig:
        missing = [name for name in REQUIRED_FIELDS if data.get(name) in (None, 0)]
        if missing:
            raise ConfigError(f"{source}: required field(s) missing or zero: {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        config = cls(**kwargs, extra=extra)
        config.validate(source)
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> LLaDA2MoeConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path}: no config.json here; a model folder needs one")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read as JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top level")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out

    def save(self, folder: str | Path) -> None:
        Path(folder, "config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def validate(self, source: str = "config.json") -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"{source}: {message}")

        if self.model_type not in MODEL_TYPES:
            fail(f"model_type {self.model_type!r} is not a LLaDA2.0 MoE model ({MODEL_TYPES})")
        if self.num_attention_heads % self.num_key_value_heads:
            fail("num_attention_heads must be a multiple of num_key_value_heads")
        if self.rotary_dim % 2:
            fail("head_dim * partial_rotary_factor must be even")
        if self.hidden_act != "silu":
            fail(f"hidden_act {self.hidden_act!r} is not supported (only 'silu')")
        if self.rope_scaling not in (None, {}) and self._rope_type() != "default":
            fail(f"rope_scaling type {self._rope_type()!r} is not supported (only 'default')")
        if self.first_k_dense_replace > 0 and not self.intermediate_size:
            fail("intermediate_size is required when first_k_dense_replace > 0")
        if self.num_experts is not None:
            if not self.moe_intermediate_size:
                fail("moe_intermediate_size is required for an MoE model")
            if self.num_experts % self.n_group:
                fail("num_experts must be a multiple of n_group")
            if self.topk_group > self.n_group:
                fail("topk_group must not exceed n_group")
            if self.num_experts_per_tok > self.num_experts // self.n_group * self.topk_group:
                fail("num_experts_per_tok exceeds the experts left after group selection")

    def _rope_type(self) -> str:
        scaling = self.rope_scaling or {}
        return scaling.get("rope_type", scaling.get("type", "default"))
