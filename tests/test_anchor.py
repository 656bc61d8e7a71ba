"""The weight anchor (elastic weight consolidation, app/demo/anchor.py) on weights small enough
to reason about, and once inside a training run."""

import pytest
import torch

from app.demo.anchor import FisherAnchor


def _two_weights():
    kept = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    free = torch.nn.Parameter(torch.tensor([0.5]))
    return kept, free


def _old_task(kept):  # what the anchor keeps: it reads `kept` only
    return lambda: ((kept - torch.tensor([1.5, -1.0])) ** 2).sum()


def test_fisher_is_where_the_old_task_has_gradient_and_averages_one():
    kept, free = _two_weights()
    anchor = FisherAnchor.estimate([kept, free], _old_task(kept), batches=3, weight=1.0)
    fisher_kept, fisher_free = anchor.fisher
    assert (fisher_kept > 0).all() and (fisher_free == 0).all()
    assert torch.cat(anchor.fisher).mean().item() == pytest.approx(1.0)
    assert kept.grad is None and free.grad is None  # estimating leaves no gradients behind


@pytest.mark.parametrize("weight", [0.0, 50.0])
def test_a_new_task_moves_the_free_weights_and_only_those_when_anchored(weight):
    kept, free = _two_weights()
    anchor = FisherAnchor.estimate([kept, free], _old_task(kept), batches=1, weight=weight)
    optim = torch.optim.Adam([kept, free], lr=0.05)
    for _ in range(200):  # the new task wants every weight at 3
        optim.zero_grad()
        ((kept - 3) ** 2).sum().add(((free - 3) ** 2).sum()).backward()
        anchor.pull()
        optim.step()
    kept_moved = (kept.detach() - torch.tensor([1.0, -2.0])).abs().max().item()
    free_moved = abs(free.item() - 0.5)
    assert free_moved > 2.0
    if weight == 0:
        assert kept_moved > 1.5 and anchor.drift() > 0.5
    else:
        assert kept_moved < 0.2  # the balance: 2 (w - 3) + 50 F (w - w0) = 0


def test_the_anchor_refuses_no_batches_and_a_loss_without_gradient():
    kept, free = _two_weights()
    with pytest.raises(ValueError, match="at least one batch"):
        FisherAnchor.estimate([kept, free], _old_task(kept), batches=0, weight=1.0)
    with pytest.raises(ValueError, match="no gradient"):
        FisherAnchor.estimate([kept, free], lambda: (kept * 0).sum(), batches=1, weight=1.0)


def test_training_with_the_anchor_logs_its_drift(tmp_path):
    from app.demo.train import train

    summary = train(tmp_path / "out", steps=2, batch_size=2, seed=0, lr=1e-3, threads=1,
                    checkpoint_every=0, task_mix={"ask_think": 1.0}, image_layout="canvas",
                    anchor_weight=1.0, anchor_mix={"generate": 0.5, "think": 0.5},
                    anchor_batches=2)
    assert summary["anchor_weight"] == 1.0 and summary["anchor_batches"] == 2
    assert summary["log"][-1]["anchor_drift"] > 0
