"""Property tests of both schedulers (hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.sampler import BlockDiffusionScheduler, CanvasScheduler, quota_schedule

MASK, V = 99, 40


def random_logits(seed, n, sharp):
    return torch.randn(n, V, generator=torch.Generator().manual_seed(seed)) * sharp


@settings(max_examples=60, deadline=None)
@given(block=st.integers(1, 16), steps=st.integers(1, 16), prompt=st.integers(0, 15),
       seed=st.integers(0, 10_000), threshold=st.floats(0.05, 1.0), sharp=st.floats(0.1, 8.0))
def test_block_scheduler_commits_each_free_position_once_following_quota(
        block, steps, prompt, seed, threshold, sharp):
    prompt = min(prompt, block - 1)
    sched = BlockDiffusionScheduler(block, threshold=threshold)
    sched.set_timesteps(steps)
    seq = torch.cat([torch.arange(prompt), torch.full((block - prompt,), MASK)])
    editable = torch.arange(block) >= prompt
    commits = torch.zeros(block, dtype=torch.long)
    for t in sched.timesteps:
        active = int((seq == MASK).sum())
        if not active:
            break
        before = seq.clone()
        out = sched.step(random_logits(seed + t, block, sharp), t, seq, mask_id=MASK,
                         editable=editable)
        n = int(out.committed.sum())
        assert n >= min(sched.quota[t], active) and n <= active
        if n > sched.quota[t]:  # only the threshold rule may exceed the quota
            assert (out.confidence[out.committed] > threshold).all()
        kept = before != MASK
        assert torch.equal(out.prev_sample[kept], before[kept])  # no change without correction
        assert not out.revised.any()
        commits += out.committed.long()
        seq = out.prev_sample
    assert commits.max() <= 1 and not commits[:prompt].any()
    if min(sched.quota) > 0:
        assert (seq != MASK).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 64), steps=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_canvas_scheduler_commits_every_free_position_exactly_once(n, steps, seed):
    sched = CanvasScheduler(temperature=1.0)
    sched.set_timesteps(steps, n)
    seq = torch.full((n,), MASK)
    commits = torch.zeros(n, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for t in sched.timesteps:
        before = seq.clone()
        out = sched.step(random_logits(seed + t, n, 2.0), t, seq, mask_id=MASK, generator=gen)
        masked_before = int((before == MASK).sum())
        # cosine target, but at least one commit per step while masks remain
        expected = min(sched.remaining[t], masked_before - 1) if masked_before else 0
        assert int((out.prev_sample == MASK).sum()) == expected
        kept = before != MASK
        assert torch.equal(out.prev_sample[kept], before[kept])
        commits += out.committed.long()
        seq = out.prev_sample
    assert (commits == 1).all()
    assert (seq != MASK).all()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 32), steps=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_self_correction_only_changes_committed_tokens_it_reports(n, steps, seed):
    sched = CanvasScheduler(temperature=1.0, remask_threshold=0.2, edit_threshold=0.6)
    sched.set_timesteps(steps, n)
    seq = torch.full((n,), MASK)
    gen = torch.Generator().manual_seed(seed)
    for t in sched.timesteps:
        before = seq.clone()
        out = sched.step(random_logits(seed * 7 + t, n, 3.0), t, seq, mask_id=MASK, generator=gen)
        changed = (before != MASK) & (out.prev_sample != before)
        assert not (changed & ~out.revised & ~out.committed).any()
        seq = out.prev_sample
    assert (seq != MASK).all()


def test_quota_schedule_matches_spec_examples():
    assert quota_schedule(8, 4) == [2, 2, 2, 2]
    assert quota_schedule(8, 3) == [3, 3, 2]
    assert quota_schedule(8, 8) == [1] * 8
    assert quota_schedule(32, 8) == [4] * 8
