"""The block-diffusion training layout computes, for every noisy block, exactly what the sampler
computes when it reaches that block (prefix + clean earlier blocks + the noisy block)."""

import numpy as np
import torch

from app.demo.data import BLOCK_LENGTH, ExampleMaker, collate_blocks
from app.engine.generate import segment_mask
from app.engine.presets import random_model


def test_each_noisy_block_sees_what_the_sampler_sees(assets):
    shipped_config, tokenizer, codec, prompts = assets  # the shipped tokenizer and codec
    config = type(shipped_config).from_dict({**shipped_config.to_dict(), "hidden_size": 32,
                                             "head_dim": 8, "num_hidden_layers": 2,
                                             "intermediate_size": 48,
                                             "moe_intermediate_size": 16})
    model = random_model(config, seed=0).eval()
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size())
    rng = np.random.default_rng(0)
    examples = [maker.make(rng, kind) for kind in ("generate", "inpaint", "edit")]
    batch = collate_blocks(examples, prompts.ids.mask, prompts.ids.eos, rng)
    with torch.no_grad():
        train_logits = model(batch.noisy, batch.attention, batch.positions)
    for i, e in enumerate(examples):
        p, n = e.prefix_len, len(e.ids)
        noisy = batch.noisy[i, :n]
        for block in range(p // BLOCK_LENGTH, (n - 1) // BLOCK_LENGTH + 1):
            start, end = block * BLOCK_LENGTH, min(n, (block + 1) * BLOCK_LENGTH)
            # What the sampler holds when it reaches this block: clean canvas before it.
            seq = torch.cat([torch.from_numpy(e.ids[:start]), noisy[start:end]]).unsqueeze(0)
            segments = torch.arange(end) // BLOCK_LENGTH
            mask = segment_mask(segments, torch.ones(1, end, dtype=torch.bool), 0, end)
            with torch.no_grad():
                want = model(seq, mask)[0, max(start, p):end]
            got = train_logits[i, max(start, p):end]
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert batch.loss_mask.any()
    # the loss covers only the noisy copy of free cells
    for i, e in enumerate(examples):
        p, n = e.prefix_len, len(e.ids)
        assert not batch.loss_mask[i, :p].any() and not batch.loss_mask[i, n:].any()
        assert not (batch.loss_mask[i, p:n].numpy() & ~e.free[p:]).any()
