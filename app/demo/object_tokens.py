"""One token per object phrase ("a small red circle at the top left"), tied to its words.

A tokenizer built with world.object_phrase_names() reads every full object phrase as one token.
There are 432 of them and each is seen a few dozen times in a training run, too rarely to learn
432 unrelated embedding and output rows. So during training a phrase's rows are the sum of its
four words' rows (size, colour, shape, position) plus a learned residual: what the model learns
about "red" or "top left" carries over to every phrase holding it, and the output head scores a
phrase as the sum of its parts' scores (a factorised choice). Saved folders hold the summed rows
(plain llada2_moe weights); `to_residual` turns them back into residuals when training resumes.
Training-only, like the probes: the engine never sees the tie.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.func import functional_call

from app.demo import world

# The tied tables: the input embedding and the output head (llada2_moe tensor names).
TIED = ("model.word_embeddings.weight", "lm_head.weight")


class ObjectTokenTie:
    def __init__(self, phrase_ids: torch.Tensor, part_ids: torch.Tensor):
        """phrase_ids [N]: the phrase tokens; part_ids [N, 4]: each phrase's word tokens."""
        self.phrase_ids, self.part_ids = phrase_ids, part_ids

    @classmethod
    def from_tokenizer(cls, tokenizer) -> ObjectTokenTie | None:
        """The tie of a tokenizer that holds the object phrases; None for one that does not."""
        phrases, parts = [], []
        for obj in world.every_object():
            phrase = tokenizer.token_to_id(obj.phrase())
            if phrase is None:
                return None
            words = (obj.size, obj.color, obj.shape, obj.position)
            ids = [tokenizer.token_to_id(w) for w in words]
            if None in ids:
                raise ValueError(f"tokenizer has the phrase {obj.phrase()!r} but not all of {words}")
            phrases.append(phrase)
            parts.append(ids)
        return cls(torch.tensor(phrases), torch.tensor(parts))

    def effective(self, table: torch.Tensor) -> torch.Tensor:
        """The table the model uses: each phrase row = its residual + the sum of its parts."""
        return table.index_add(0, self.phrase_ids, table[self.part_ids].sum(1))

    def __call__(self, model, *args, **kwargs):
        """model(*args, **kwargs) with the tied tables (gradients reach residuals and parts)."""
        tied = {n: self.effective(t) for n, t in zip(TIED, self._tables(model), strict=True)}
        return functional_call(model, tied, args, kwargs)

    def _tables(self, model) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[n] for n in TIED]

    @torch.no_grad()
    def zero_residual(self, model) -> None:
        """A fresh model: every phrase starts as exactly the sum of its words."""
        for table in self._tables(model):
            table[self.phrase_ids] = 0.0

    @torch.no_grad()
    def to_residual(self, model) -> None:
        """Weights loaded from a folder (summed rows) back to residuals."""
        for table in self._tables(model):
            table[self.phrase_ids] -= table[self.part_ids].sum(1)

    @contextmanager
    def materialised(self, model):
        """Within: the model's tables hold the summed rows (to save a folder); restored after."""
        tables = self._tables(model)
        raw = [t.detach().clone() for t in tables]
        with torch.no_grad():
            for t in tables:
                t.copy_(self.effective(t))
        try:
            yield model
        finally:
            with torch.no_grad():
                for t, r in zip(tables, raw, strict=True):
                    t.copy_(r)
