"""Model configs by scale and random-weight models: for tests, benchmarks and the demo's start.

`mini` is LLaDA2.0-mini exactly as ../shared/spec/llada2_moe.md §1.3 gives it (16B params).
"""

from __future__ import annotations

import torch

from app.engine.checkpoint import build_empty
from app.engine.config import LLaDA2MoeConfig

# spec §1.3, LLaDA2.0-mini; vocab 173568 = 157184 text ids + 16384 image codes (llada2_uni.md §2.5)
MINI = dict(
    vocab_size=173568, hidden_size=2048, num_hidden_layers=20, num_attention_heads=16,
    num_key_value_heads=4, head_dim=128, intermediate_size=5120, moe_intermediate_size=512,
    num_experts=256, num_experts_per_tok=8, n_group=8, topk_group=4, num_shared_experts=1,
    first_k_dense_replace=1, routed_scaling_factor=2.5, partial_rotary_factor=0.5,
    rope_theta=600000.0, rms_norm_eps=1e-6, use_qk_norm=True, use_qkv_bias=False, use_bias=False,
    tie_word_embeddings=False, max_position_embeddings=32768, pad_token_id=156892,
    image_token_offset=157184, eos_token_id=156892, mask_token_id=156895,
)

SMALL = dict(
    MINI, vocab_size=8192, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
    num_key_value_heads=2, head_dim=64, intermediate_size=1024, moe_intermediate_size=128,
    num_experts=64, num_experts_per_tok=8, n_group=8, topk_group=4, pad_token_id=8000,
    image_token_offset=4096, eos_token_id=8000, mask_token_id=8001,
)

TINY = dict(
    MINI, vocab_size=96, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, intermediate_size=48, moe_intermediate_size=16,
    num_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2, rope_theta=10000.0,
    pad_token_id=90, image_token_offset=64, eos_token_id=90, mask_token_id=91,
)

SCALES = {"tiny": TINY, "small": SMALL, "mini": MINI}


def config_for(scale: str, **overrides) -> LLaDA2MoeConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    return LLaDA2MoeConfig.from_dict({**SCALES[scale], **overrides}, source=f"preset {scale}")


@torch.no_grad()
def random_model(
    config: LLaDA2MoeConfig,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    std: float = 0.02,
):
    """A model with random weights; norms and expert biases are randomised too so tests see them."""
    device = torch.device(device)
    model = build_empty(config, dtype, device)
    # Drawn where the model lives: the 16B `mini` takes minutes to draw on a CPU, a second on a
    # GPU. A CUDA model's weights therefore differ from a CPU model's of the same seed.
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, device=device)

    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.endswith("norm.weight") or "layernorm" in name:
            values = 1.0 + 0.2 * randn(tensor.shape)
        elif name.endswith("expert_bias"):
            values = 0.1 * randn(tensor.shape)
        elif name.endswith(".bias"):
            values = 0.02 * randn(tensor.shape)
        else:
            values = std * randn(tensor.shape)
        tensor.copy_(values)
    return model.eval().requires_grad_(False)
