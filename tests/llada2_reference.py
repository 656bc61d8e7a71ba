"""An independent, deliberately plain LLaDA2.0 MoE written from ../shared/spec/llada2_moe.md only.

It shares no code with app.engine: it reads a flat state dict with per-expert tensors (spec §2),
loops over heads, tokens and experts, and follows the §5.3 pseudo-code of `generate()` literally
(full window every step, no cache). Tests compare the engine against it.
"""

from __future__ import annotations

import math

import torch


def rms(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def rope(x, pos, rd, theta):
    """x [S, hd] for one head; NeoX rotate-half on the first rd channels."""
    out = x.clone()
    for s in range(x.shape[0]):
        for j in range(rd // 2):
            freq = float(pos[s]) / theta ** (2 * j / rd)
            c, sn = math.cos(freq), math.sin(freq)
            a, b = x[s, j].item(), x[s, j + rd // 2].item()
            out[s, j] = a * c - b * sn
            out[s, j + rd // 2] = b * c + a * sn
    return out


def silu_mlp(x, g, u, d):
    return (torch.nn.functional.silu(x @ g.t()) * (x @ u.t())) @ d.t()


def route(x, cfg, sd, p):
    """Returns (experts, weights) per token, computed one token at a time."""
    E, G, TG, K = cfg["num_experts"], cfg["n_group"], cfg["topk_group"], cfg["num_experts_per_tok"]
    per = E // G
    picks = []
    for t in range(x.shape[0]):
        s = torch.sigmoid(x[t].float() @ sd[p + "gate.weight"].float().t())
        sb = s + sd[p + "gate.expert_bias"].float()
        gscore = [sorted(sb[g * per:(g + 1) * per].tolist(), reverse=True)[:2] for g in range(G)]
        gscore = [sum(v) for v in gscore]
        keep = sorted(range(G), key=lambda g: -gscore[g])[:TG]
        cand = [(sb[e].item(), e) for e in range(E) if e // per in keep]
        chosen = [e for _, e in sorted(cand, key=lambda v: -v[0])[:K]]
        w = torch.stack([s[e] for e in chosen])
        if K > 1:
            w = w / (w.sum() + 1e-20)
        picks.append((chosen, w * cfg["routed_scaling_factor"]))
    return picks


def forward(sd, cfg, ids, mask=None, pos=None):
    """ids [S] (batch 1); mask: None or bool [S, S] (True = attend). Returns logits [S, V]."""
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    rd = int(hd * cfg["partial_rotary_factor"])
    eps = cfg["rms_norm_eps"]
    S = ids.shape[0]
    pos = torch.arange(S) if pos is None else pos
    h = sd["model.word_embeddings.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms(h, sd[p + "input_layernorm.weight"], eps)
        qkv = x @ sd[p + "attention.query_key_value.weight"].t()
        heads = qkv.view(S, nh + 2 * nkv, hd)
        outs = []
        for j in range(nh):
            kv = j // (nh // nkv)
            q = rms(heads[:, j], sd[p + "attention.query_layernorm.weight"], eps)
            k = rms(heads[:, nh + kv], sd[p + "attention.key_layernorm.weight"], eps)
            v = heads[:, nh + nkv + kv]
            q, k = rope(q, pos, rd, cfg["rope_theta"]), rope(k, pos, rd, cfg["rope_theta"])
            scores = (q @ k.t()) / math.sqrt(hd)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            outs.append(scores.float().softmax(-1).to(v.dtype) @ v)
        attn = torch.cat(outs, dim=-1) @ sd[p + "attention.dense.weight"].t()
        if p + "attention.dense.bias" in sd:
            attn = attn + sd[p + "attention.dense.bias"]
        h = h + attn
        x = rms(h, sd[p + "post_attention_layernorm.weight"], eps)
        m = p + "mlp."
        if i < cfg["first_k_dense_replace"]:
            y = silu_mlp(x, sd[m + "gate_proj.weight"], sd[m + "up_proj.weight"],
                         sd[m + "down_proj.weight"])
        else:
            y = torch.zeros_like(x, dtype=torch.float32)
            for t, (chosen, w) in enumerate(route(x, cfg, sd, m)):
                for e, we in zip(chosen, w, strict=True):
                    ep = f"{m}experts.{e}."
                    out = silu_mlp(x[t:t + 1], sd[ep + "gate_proj.weight"], sd[ep + "up_proj.weight"],
                                   sd[ep + "down_proj.weight"])
                    y[t] += out[0].float() * we
            y = y.to(x.dtype) + silu_mlp(x, sd[m + "shared_experts.gate_proj.weight"],
                                         sd[m + "shared_experts.up_proj.weight"],
                                         sd[m + "shared_experts.down_proj.weight"])
        h = h + y
    h = rms(h, sd["model.norm.weight"], eps)
    return (h @ sd["lm_head.weight"].t()).float()


def generate(sd, cfg, prompt, gen_length, block_length, steps, threshold, mask_id, eos_id):
    """spec §5.3 literally, greedy (temperature 0), batch 1, no cache."""
    steps = min(steps, gen_length)
    P = len(prompt)
    nb = math.ceil((P + gen_length) / block_length)
    T = nb * block_length
    x = torch.cat([prompt, torch.full((T - P,), mask_id, dtype=torch.long)])
    blk = torch.arange(T) // block_length
    full_mask = blk.unsqueeze(0) <= blk.unsqueeze(1)
    base, rem = divmod(block_length, steps)
    quota = [base + 1 if s < rem else base for s in range(steps)]
    for b in range(P // block_length, nb):
        end = (b + 1) * block_length
        for s in range(steps):
            blockx = x[end - block_length:end]
            active = blockx == mask_id
            if not active.any():
                break
            logits = forward(sd, cfg, x[:end], full_mask[:end, :end])[-block_length:]
            probs = logits.softmax(-1)
            tok = logits.argmax(-1)
            p = probs.gather(-1, tok[:, None]).squeeze(-1)
            conf = torch.where(active, p, torch.tensor(float("-inf")))
            high = conf > threshold
            if int(high.sum()) >= quota[s]:
                commit = high
            else:
                commit = torch.zeros_like(active)
                k = min(quota[s], int(active.sum()))
                commit[conf.topk(k).indices] = True
            blockx[commit] = tok[commit]
        if (x[P:end] == eos_id).any():
            break
    ans = x[P:P + gen_length]
    hits = (ans == eos_id).nonzero()
    return ans[: int(hits[0]) + 1] if len(hits) else ans
