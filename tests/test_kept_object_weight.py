"""Edits: output cells that keep a source object's code can weigh more in the loss, so copying is
rewarded at the output (app/demo/data.py kept_object_cells, --kept-object-weight)."""

import numpy as np

from app.demo import world
from app.demo.data import collate, kept_object_cells
from tests.probe_fixtures import made_examples


def test_kept_object_cells_are_the_unmoved_object_not_the_background(assets):
    config, tokenizer, codec, prompts = assets
    scene = world.Scene("white", (world.Obj("circle", "red", "large", "top left"),
                                  world.Obj("square", "blue", "large", "bottom right")))
    moved = world.apply_edit(scene, "move the circle to the center")
    source, goal = codec.encode(world.render(scene)), codec.encode(world.render(moved))
    kept = kept_object_cells(source, goal)
    square = codec.encode(world.render(world.Scene("white", scene.objects[1:])))
    background = np.bincount(source.reshape(-1)).argmax()
    # exactly the square's cells: kept by the move, and not background
    assert kept.tolist() == (square != background).tolist()
    assert 0 < kept.sum() < 40


def test_edit_examples_weigh_kept_object_cells_and_collate_carries_it(assets):
    prompts = assets[3]
    edits, rng = made_examples(assets, "edit", 6, 21, kept_object_weight=4.0)
    for e in edits:
        assert (e.weights[: e.prefix_len] == 1.0).all()
        assert set(np.unique(e.weights[e.prefix_len:])) <= {1.0, 4.0}
        assert (e.weights[e.prefix_len:] == 4.0).sum() < (len(e.ids) - e.prefix_len) // 2
    assert any((e.weights == 4.0).any() for e in edits)  # some edit keeps an object
    batch = collate(edits, prompts.ids.mask, prompts.ids.eos, rng)
    for i, e in enumerate(edits):
        assert batch.weights[i, : len(e.ids)].numpy().tolist() == e.weights.tolist()
    assert made_examples(assets, "edit", 1, 21)[0][0].weights is None  # weight 1: none kept


def test_changed_cells_weigh_their_own_weight_beside_kept_objects(assets):
    edits, _ = made_examples(assets, "edit", 6, 21, kept_object_weight=4.0,
                             changed_cell_weight=3.0)
    kept_only, _ = made_examples(assets, "edit", 6, 21, kept_object_weight=4.0)
    for e, k in zip(edits, kept_only, strict=True):
        assert e.ids.tolist() == k.ids.tolist()  # same examples, only the weights differ
        canvas, kept_canvas = e.weights[e.prefix_len:], k.weights[k.prefix_len:]
        assert set(np.unique(canvas)) <= {1.0, 3.0, 4.0}
        assert (canvas == 3.0).any()  # every edit changes some cell
        # changed cells are never kept ones, and the kept cells are the same as without it
        assert ((canvas == 4.0) == (kept_canvas == 4.0)).all()
        assert ((canvas == 3.0) <= (kept_canvas == 1.0)).all()
