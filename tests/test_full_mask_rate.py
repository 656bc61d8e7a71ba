"""Image batches can start some canvases from nothing drawn (data.collate full_mask_rate), the
state where a cell must read the prompt to tell two objects' colours apart."""

import numpy as np
import pytest

from app.demo.data import collate
from app.demo.train import train
from tests.probe_fixtures import made_examples


def test_full_mask_rate_masks_whole_canvases_and_zero_keeps_the_old_draws(assets):
    prompts = assets[3]
    examples, _ = made_examples(assets, "generate", 8, 31)
    mask = prompts.ids.mask

    whole = collate(examples, mask, prompts.ids.eos, np.random.default_rng(1), full_mask_rate=1.0)
    for i, e in enumerate(examples):
        row = whole.noisy[i, : len(e.ids)].numpy()
        assert (row[e.free] == mask).all()  # the whole canvas, no swapped codes either
        assert (row[~e.free] == e.ids[~e.free]).all()  # the prompt as it was
        assert whole.loss_mask[i, : len(e.ids)].numpy().tolist() == e.free.tolist()

    plain = collate(examples, mask, prompts.ids.eos, np.random.default_rng(1))
    off = collate(examples, mask, prompts.ids.eos, np.random.default_rng(1), full_mask_rate=0.0)
    assert (plain.noisy == off.noisy).all()  # rate 0 draws no extra random numbers
    masked_share = [(plain.noisy[i, : len(e.ids)].numpy()[e.free] == mask).mean()
                    for i, e in enumerate(examples)]
    assert min(masked_share) < 1.0  # the plain schedule does leave cells drawn

    half = collate(examples * 8, mask, prompts.ids.eos, np.random.default_rng(2),
                   full_mask_rate=0.5)
    whole_rows = sum(bool((half.noisy[i, : len(e.ids)].numpy()[e.free] == mask).all())
                     for i, e in enumerate(examples * 8))
    assert 16 <= whole_rows <= 50  # about half of 64 (plus the rare natural full mask)


def test_full_mask_rate_needs_the_canvas_layout(tmp_path):
    with pytest.raises(ValueError, match="canvas"):
        train(tmp_path, steps=1, batch_size=1, seed=0, lr=1e-3, threads=1,
              image_layout="blocks", full_mask_rate=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train(tmp_path, steps=1, batch_size=1, seed=0, lr=1e-3, threads=1,
              image_layout="canvas", full_mask_rate=1.5)
