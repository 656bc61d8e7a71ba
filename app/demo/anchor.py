"""Elastic weight consolidation (Kirkpatrick et al., 2017, "Overcoming catastrophic forgetting
in neural networks"): a fine-tune that trains some tasks keeps the weights the other tasks
depend on near their starting values.

The demo's text steps (answer and edit thinking) learn fast only at a learning rate that wrecks
drawing when the batches are text alone (session 20 of issue 3: 0 / 0 / 29 / 0 / 18 on `unmask
eval -n 100` after 1500 such steps at 1e-3). Here each weight is pulled back towards its start
in proportion to how much the anchored tasks' loss depends on it: the diagonal of the empirical
Fisher information, the mean squared gradient of their loss over a few batches, estimated once
before training. Weights drawing barely uses are free to move.

The pull is added to the gradients after clipping, so it never scales the task gradients down.
The Fisher is divided by its mean over all weights: at `weight` W a weight of average importance,
moved by d from its start, gets a gradient of W * d back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class FisherAnchor:
    def __init__(self, params: Iterable[torch.nn.Parameter], fisher: list[torch.Tensor],
                 weight: float) -> None:
        self.params = list(params)
        if len(fisher) != len(self.params):
            raise ValueError(f"{len(fisher)} Fisher tensors for {len(self.params)} weights")
        self.start = [p.detach().clone() for p in self.params]
        self.fisher = fisher
        self.weight = weight

    @classmethod
    def estimate(cls, params: Iterable[torch.nn.Parameter], loss: Callable[[], torch.Tensor],
                 batches: int, weight: float) -> FisherAnchor:
        """loss(): one batch of the anchored tasks' loss (a fresh batch each call), whose
        backward fills the params' gradients."""
        if batches < 1:
            raise ValueError(f"the Fisher needs at least one batch, not {batches}")
        params = [p for p in params if p.requires_grad]
        fisher = [torch.zeros_like(p) for p in params]
        for _ in range(batches):
            for p in params:
                p.grad = None
            loss().backward()
            for f, p in zip(fisher, params, strict=True):
                if p.grad is not None:
                    f.add_(p.grad.detach() ** 2)
        for p in params:
            p.grad = None
        total = sum(float(f.sum()) for f in fisher)
        count = sum(f.numel() for f in fisher)
        if total <= 0:
            raise ValueError("the anchored tasks' loss has no gradient: nothing to anchor")
        scale = count / total  # mean importance 1
        return cls(params, [f * scale for f in fisher], weight)

    def pull(self) -> None:
        """Add the penalty's gradient, weight * F * (w - w_start), to each weight's .grad."""
        with torch.no_grad():
            for p, start, f in zip(self.params, self.start, self.fisher, strict=True):
                grad = self.weight * f * (p - start)
                if p.grad is None:
                    p.grad = grad
                else:
                    p.grad.add_(grad)

    def drift(self) -> float:
        """The Fisher-weighted mean squared distance from the start (what the penalty is of)."""
        with torch.no_grad():
            total = sum(float((f * (p - s) ** 2).sum())
                        for p, s, f in zip(self.params, self.start, self.fisher, strict=True))
        return total / sum(f.numel() for f in self.fisher)
