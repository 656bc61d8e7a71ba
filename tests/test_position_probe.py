"""The grid-position probe labels exactly the image cells, in both training layouts; its loss
trains the layers up to the probe and leaves no trace in the saved model."""

import numpy as np
import torch

from app.demo.data import GRID_SIDE, ExampleMaker, collate, collate_blocks
from app.demo.position_probe import IGNORE, PROBE_LAYER, LayerOutput, PositionProbe, grid_labels
from tests.probe_fixtures import tiny_trainable_model

CELLS = GRID_SIDE * GRID_SIDE


def test_labels_mark_every_canvas_cell_in_row_major_order(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(0)
    examples = [maker.make(rng, kind) for kind in ("generate", "edit", "ask")]
    batch = collate(examples, prompts.ids.mask, prompts.ids.eos, rng)
    labels = grid_labels(batch.clean, None, prompts.ids.boi, GRID_SIDE)
    for i, (example, images) in enumerate(zip(examples, (1, 2, 1), strict=True)):
        row = labels[i]
        assert int((row != IGNORE).sum()) == images * CELLS  # edit: source and output
        boi = np.flatnonzero(example.ids == prompts.ids.boi)
        for start in boi + 1:
            assert row[start:start + CELLS].tolist() == list(range(CELLS))
        # the labelled tokens are image codes, nothing else
        codes = batch.clean[i][row != IGNORE]
        assert bool((codes >= prompts.ids.image_offset).all())
    gen = examples[0]
    assert (labels[0, : gen.prefix_len] == IGNORE).all()


def test_block_layout_labels_both_copies_of_the_canvas_alike(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "blocks")
    rng = np.random.default_rng(1)
    examples = [maker.make(rng, "generate") for _ in range(2)]
    batch = collate_blocks(examples, prompts.ids.mask, prompts.ids.eos, rng)
    labels = grid_labels(batch.clean, batch.positions, prompts.ids.boi, GRID_SIDE)
    for i, e in enumerate(examples):
        n = len(e.ids)
        noisy_copy = labels[i, e.prefix_len:n]
        assert noisy_copy.tolist() == list(range(CELLS))
        clean_copy = labels[i, n:]
        kept = clean_copy[clean_copy != IGNORE].tolist()
        # the clean copy starts at the block holding the prompt's end; its cells repeat the tail
        assert kept == list(range(CELLS))[-len(kept):] and len(kept) == CELLS


def test_probe_loss_reaches_the_early_layers_only_and_stays_out_of_the_saved_model(assets):
    config, tokenizer, codec, prompts = assets
    model = tiny_trainable_model(config)
    small = model.config
    names_before = set(model.state_dict())
    probe = PositionProbe(small.hidden_size, GRID_SIDE)
    probed = LayerOutput(model.model.layers[PROBE_LAYER])
    layout = prompts.text_to_image("a red circle", GRID_SIDE, GRID_SIDE)
    ids = torch.tensor([layout.prefix + [prompts.ids.mask] * CELLS])
    clean = ids.clone()
    clean[0, len(layout.prefix):] = prompts.ids.image_offset  # any code: labels need the layout
    model(ids)
    loss, accuracy = probe.loss(probed.value, grid_labels(clean, None, prompts.ids.boi, GRID_SIDE))
    loss.backward()
    assert 0.0 <= accuracy <= 1.0 and loss.item() > 0
    layers = model.model.layers
    # the signal reaches the attention that must find <boi>, and nothing above the probe
    assert layers[0].attention.query_key_value.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in layers[PROBE_LAYER + 1].parameters())
    assert model.lm_head.weight.grad is None
    probed.remove()
    assert set(model.state_dict()) == names_before
    assert not layers[PROBE_LAYER]._forward_hooks
