"""The LLaDA2.0 MoE transformer (`LLaDA2MoeModelLM`), read top to bottom like its spec.

Everything here follows ../shared/spec/llada2_moe.md §3: RMSNorm computed in fp32 and cast back
before the weight (§3.2); fused QKV, per-head q/k RMSNorm *before* partial NeoX RoPE, GQA and no
causal mask — only the attention mask restricts attention (§3.3, §4); dense MLP in the first
`first_k_dense_replace` layers and the MoE block after (§3.4-3.6); fp32 logits (§3.7).

Two additions serve fast decoding and keep the math unchanged:
- a prefix KV cache (`KVCache`): with a block-causal mask, K/V of finished blocks never depend on
  later tokens, so they are computed once (`cache_write`);
- `logits_index`: the lm_head runs only on the positions the caller asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.config import LLaDA2MoeConfig
from app.engine.moe import MLP, MoeBlock


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype=None, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)  # cast back before the weight (spec §3.2)


def rope_cos_sin(
    positions: torch.Tensor, rotary_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Default RoPE tables for positions [B, S] -> cos, sin [B, 1, S, rotary_dim] (spec §3.3.4)."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, rotary_dim, 2, device=positions.device).float() / rotary_dim)
    )
    freqs = positions.float().unsqueeze(-1) * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)


def apply_partial_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeoX rotate-half on the first rotary_dim channels of each head; the rest pass through."""
    rd = cos.shape[-1]
    rot, rest = x[..., :rd], x[..., rd:]
    r1, r2 = rot[..., : rd // 2], rot[..., rd // 2 :]
    rotated = rot * cos + torch.cat([-r2, r1], dim=-1) * sin
    return torch.cat([rotated, rest], dim=-1)


@dataclass
class KVCache:
    """Preallocated per-layer K/V of finished positions: [B, nkv, max_len, hd] each."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @classmethod
    def allocate(cls, config: LLaDA2MoeConfig, batch: int, max_len: int, dtype, device) -> KVCache:
        shape = (batch, config.num_key_value_heads, max_len, config.head_dim)
        layers = range(config.num_hidden_layers)
        return cls(
            keys=[torch.empty(shape, dtype=dtype, device=device) for _ in layers],
            values=[torch.empty(shape, dtype=dtype, device=device) for _ in layers],
        )

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]


class Attention(nn.Module):
    def __init__(self, config: LLaDA2MoeConfig, layer_index: int, dtype=None, device=None):
        super().__init__()
        self.layer_index = layer_index
        self.nh, self.nkv, self.hd = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        kw = dict(dtype=dtype, device=device)
        self.query_key_value = nn.Linear(
            config.hidden_size, (self.nh + 2 * self.nkv) * self.hd, bias=config.use_qkv_bias, **kw
        )
        self.dense = nn.Linear(self.nh * self.hd, config.hidden_size, bias=config.use_bias, **kw)
        if config.use_qk_norm:
            self.query_layernorm = RMSNorm(self.hd, config.rms_norm_eps, **kw)
            self.key_layernorm = RMSNorm(self.hd, config.rms_norm_eps, **kw)
        else:
            self.query_layernorm = self.key_layernorm = None

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        cache_write: int,
    ) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.query_key_value(x).view(b, s, self.nh + 2 * self.nkv, self.hd).transpose(1, 2)
        q, k, v = qkv.split([self.nh, self.nkv, self.nkv], dim=1)
        if self.query_layernorm is not None:
            q, k = self.query_layernorm(q), self.key_layernorm(k)
        q, k = apply_partial_rope(q, cos, sin), apply_partial_rope(k, cos, sin)
        if cache is not None:
            start = cache.length
            keys, values = cache.keys[self.layer_index], cache.values[self.layer_index]
            if cache_write:
                keys[:, :, start : start + cache_write] = k[:, :, :cache_write]
                values[:, :, start : start + cache_write] = v[:, :, :cache_write]
            k = torch.cat([keys[:, :, :start], k], dim=2)
            v = torch.cat([values[:, :, :start], v], dim=2)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.hd**-0.5, enable_gqa=self.nh != self.nkv
        )
        return self.dense(out.transpose(1, 2).reshape(b, s, self.nh * self.hd))


class DecoderLayer(nn.Module):
    def __init__(self, config: LLaDA2MoeConfig, index: int, dtype=None, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.attention = Attention(config, index, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        if config.is_moe_layer(index):
            self.mlp = MoeBlock(config, **kw)
        else:
            self.mlp = MLP(config.hidden_size, config.intermediate_size, **kw)

    def forward(self, h, cos, sin, mask, cache, cache_write):
        h = h + self.attention(self.input_layernorm(h), cos, sin, mask, cache, cache_write)
        return h + self.mlp(self.post_attention_layernorm(h))


class LLaDA2MoeBackbone(nn.Module):
    """`model.*`: embeddings, decoder layers and the final norm."""

    def __init__(self, config: LLaDA2MoeConfig, dtype=None, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        # Weights always come from a checkpoint or an explicit init, so skip nn.Embedding's own:
        # on the meta device it makes torch import its compiler stack (torch._dynamo, sympy),
        # 1.8 s of every model load.
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size,
            _weight=torch.empty(config.vocab_size, config.hidden_size, **kw),
        )
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, **kw) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)


class LLaDA2MoeModelLM(nn.Module):
    """The whole LM: `model.*` plus `lm_head`. Same tensor names as the HF checkpoint (spec §2)."""

    def __init__(self, config: LLaDA2MoeConfig, dtype=None, device=None):
        super().__init__()
        self.config = config
        self.model = LLaDA2MoeBackbone(config, dtype=dtype, device=device)
        self.lm_head = nn.Linear(
            config.hidden_size, config.vocab_size, bias=False, dtype=dtype, device=device
        )
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.word_embeddings.weight

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def moe_blocks(self) -> list[MoeBlock]:
        return [layer.mlp for layer in self.model.layers if isinstance(layer.mlp, MoeBlock)]

    def expert_counts(self) -> torch.Tensor | None:
        """Tokens routed to each expert in the last forward: [moe_layers, E] int64 (None if dense)."""
        counts = [block.last_counts for block in self.moe_blocks()]
        if not counts or any(c is None for c in counts):
            return None
        return torch.stack(counts)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        cache_write: int = 0,
        logits_index: slice | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, S', V] in fp32 (S' = S unless `logits_index` picks positions).

        logits_index: a slice or 1-D index picks the same positions in every row; a bool [B, S]
        tensor picks positions per row and gives [N, V] for its N True entries (training scores
        only the masked positions, so the head need not run over the rest).

        attention_mask: None = full bidirectional attention; a 4-D float mask is additive; a 4-D
        bool mask is True = attend (spec §4). With a cache its last axis covers cached + new keys.
        cache_write: how many leading tokens of this call join the cache for later calls.
        """
        b, s = input_ids.shape
        past = cache.length if cache is not None else 0
        if cache is not None and past + s > cache.capacity:
            raise ValueError(f"KV cache holds {cache.capacity} positions; {past + s} needed")
        if position_ids is None:
            position_ids = torch.arange(past, past + s, device=input_ids.device)
        if position_ids.dim() == 1:
            position_ids = position_ids.unsqueeze(0).expand(b, -1)
        h = self.model.word_embeddings(input_ids)
        cos, sin = rope_cos_sin(
            position_ids, self.config.rotary_dim, self.config.rope_theta, h.dtype
        )
        mask = self._prepare_mask(attention_mask, past + s, h.dtype)
        for layer in self.model.layers:
            h = layer(h, cos, sin, mask, cache, cache_write)
        if cache is not None:
            cache.length += cache_write
        if isinstance(logits_index, torch.Tensor) and logits_index.dtype == torch.bool:
            if logits_index.shape != (b, s):
                raise ValueError(f"bool logits_index must be [B, S] = {[b, s]}, "
                                 f"got {list(logits_index.shape)}")
            h = h[logits_index]
        elif logits_index is not None:
            h = h[:, logits_index]
        return self.lm_head(self.model.norm(h)).float()

    @staticmethod
    def _prepare_mask(mask: torch.Tensor | None, kv_len: int, dtype) -> torch.Tensor | None:
        if mask is None:
            return None
        if mask.dim() != 4:
            raise ValueError(
                f"attention_mask must be 4-D [B or 1, 1, S, S] (got {mask.dim()}-D); "
                "None means full bidirectional attention"
            )
        mask = mask[..., :kv_len]
        # A float mask is additive and must match the query dtype for SDPA (spec §3.8).
        return mask if mask.dtype == torch.bool else mask.to(dtype)
