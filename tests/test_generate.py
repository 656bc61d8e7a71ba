"""Block diffusion and canvas loops: reference semantics, KV cache exactness, CFG, cancel."""

import pytest
import torch

from app.engine import BlockDiffusionRun, Cancelled, CanvasRun, generate_text
from app.engine.sampler import BlockDiffusionScheduler
from tests import llada2_reference as ref
from tests.test_model import per_expert_state_dict

MASK, EOS = 91, 90


def sharp_model(tiny_config):
    """A random model with large weights so confidences spread (some beat the threshold)."""
    from app.engine.presets import random_model

    return random_model(tiny_config, seed=7, std=0.6)


@pytest.mark.parametrize("prompt_len,gen,block,steps", [(5, 12, 4, 2), (8, 10, 4, 3), (3, 8, 8, 8)])
def test_kv_cached_generation_equals_reference_generate(tiny_config, prompt_len, gen, block, steps):
    model = sharp_model(tiny_config)
    prompt = torch.randint(0, 64, (prompt_len,), generator=torch.Generator().manual_seed(prompt_len))
    kw = dict(gen_length=gen, block_length=block, steps=steps, threshold=0.5, mask_id=MASK,
              eos_id=EOS)
    cached = generate_text(model, prompt, **kw)
    uncached = generate_text(model, prompt, use_cache=False, **kw)
    reference = ref.generate(per_expert_state_dict(model), tiny_config.to_dict(), prompt, gen,
                             block, steps, 0.5, MASK, EOS)
    assert cached.tolist() == uncached.tolist() == reference.tolist()


def test_eos_truncates_and_is_included(tiny_config):
    model = sharp_model(tiny_config)
    model.lm_head.weight.data[EOS] += 5.0  # make eos likely
    out = generate_text(model, torch.arange(6), gen_length=16, block_length=4, steps=4,
                        mask_id=MASK, eos_id=EOS)
    assert EOS in out.tolist() and out[-1] == EOS and out.tolist().count(EOS) == 1


def test_cfg_scale_one_equals_no_cfg(tiny_config):
    model = sharp_model(tiny_config)
    prompt, uncond = torch.arange(10), torch.tensor([3, 4, 5])
    plain = BlockDiffusionRun(model, prompt, gen_length=8, mask_id=MASK, eos_id=None,
                              block_length=4, steps=4).run()
    guided1 = BlockDiffusionRun(model, prompt, gen_length=8, mask_id=MASK, eos_id=None,
                                block_length=4, steps=4, uncond_ids=uncond, cfg_scale=1.0).run()
    guided3 = BlockDiffusionRun(model, prompt, gen_length=8, mask_id=MASK, eos_id=None,
                                block_length=4, steps=4, uncond_ids=uncond, cfg_scale=3.0)
    assert torch.equal(plain, guided1)
    assert guided3.runner.rows.ids.shape[0] == 2
    guided3.run()


def test_cfg_padding_is_invisible(tiny_config):
    """The uncond row's left padding must not change its logits (excluded from attention)."""
    from app.engine.generate import build_rows, segment_mask

    model = sharp_model(tiny_config)
    uncond, tail = torch.tensor([3, 4, 5]), torch.full((4,), MASK)
    rows = build_rows(torch.arange(7), tail, MASK, uncond)
    seg = torch.zeros(11, dtype=torch.long)
    padded = model(rows.ids, segment_mask(seg, rows.key_valid, 0, 11), rows.positions)[1, 4:]
    alone = model(torch.cat([uncond, tail])[None])[0]
    assert (padded - alone).abs().max() < 1e-4


def test_image_range_restriction_and_canvas_commits_every_free_cell(tiny_config):
    model = sharp_model(tiny_config)
    ids = torch.cat([torch.arange(6), torch.full((16,), MASK)])
    free = torch.zeros(22, dtype=torch.bool)
    free[6:] = True
    run = CanvasRun(model, ids, free, prefix_len=6, mask_id=MASK, steps=5, token_range=(64, 80),
                    generator=torch.Generator().manual_seed(0))
    seen = []
    for step in run:
        seen += step.committed.tolist()
    out = run.sequence
    assert sorted(seen) == list(range(6, 22))
    assert ((out[6:] >= 64) & (out[6:] < 80)).all()


def test_canvas_cache_equals_uncached(tiny_config):
    model = sharp_model(tiny_config)
    ids = torch.cat([torch.arange(6), torch.full((12,), MASK)])
    free = torch.arange(18) >= 8
    runs = [CanvasRun(model, ids, free, prefix_len=6, mask_id=MASK, steps=4, use_cache=c,
                      uncond_prefix=torch.tensor([1, 2]), cfg_scale=2.0,
                      generator=torch.Generator().manual_seed(5)).run() for c in (True, False)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:8], ids[:8])


def test_cancel_stops_before_next_step(tiny_config):
    model = sharp_model(tiny_config)
    calls = []
    run = BlockDiffusionRun(model, torch.arange(4), gen_length=16, mask_id=MASK, eos_id=None,
                            block_length=4, steps=4, should_cancel=lambda: len(calls) >= 2)
    with pytest.raises(Cancelled):
        for step in run:
            calls.append(step)
    assert len(calls) == 2


def test_same_seed_same_tokens_with_sampling(tiny_config):
    model = sharp_model(tiny_config)

    def once(seed):
        sched = BlockDiffusionScheduler(4, threshold=0.9, temperature=1.0, top_k=20, top_p=0.9)
        return BlockDiffusionRun(model, torch.arange(5), gen_length=8, mask_id=MASK, eos_id=None,
                                 block_length=4, steps=4, scheduler=sched,
                                 generator=torch.Generator().manual_seed(seed)).run()

    assert torch.equal(once(1), once(1))


def test_self_correction_reports_revisions(tiny_config):
    model = sharp_model(tiny_config)
    sched = BlockDiffusionScheduler(8, threshold=0.99, remask_threshold=0.5)
    run = BlockDiffusionRun(model, torch.arange(5), gen_length=16, mask_id=MASK, eos_id=None,
                            block_length=8, steps=6, scheduler=sched)
    steps = list(run)
    assert any(len(s.revised) for s in steps)
    assert not (run.sequence[5:] == MASK).any()  # every position ends committed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("self_correct", [False, True])
def test_block_loop_on_cuda_gives_the_cpu_tokens(tiny_config, self_correct):
    """An image-style run (CFG, token range, KV cache, greedy) on CUDA and on the CPU."""
    cpu = sharp_model(tiny_config)
    gpu = sharp_model(tiny_config).to("cuda")
    prompt = torch.randint(0, 64, (8,), generator=torch.Generator().manual_seed(1))
    outs = []
    for model in (cpu, gpu):
        scheduler = BlockDiffusionScheduler(4, threshold=0.9, remask_threshold=0.05 if self_correct else None)
        run = BlockDiffusionRun(model, prompt, gen_length=16, mask_id=MASK, eos_id=None, block_length=4,
                                steps=4, scheduler=scheduler, uncond_ids=prompt[-2:], cfg_scale=2.0,
                                token_range=(64, 90))
        steps = list(run)
        outs.append(run.result().cpu())
        assert all(s.committed.device == model.device for s in steps)
    assert outs[0].tolist() == outs[1].tolist()
    assert all(64 <= t < 90 for t in outs[1].tolist())
