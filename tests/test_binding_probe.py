"""The binding probe (app/demo/binding_probe.py): each output-canvas cell names the object whose
3x3 place holds it; labelled only where the prompt fixes every object's place."""

import json

import numpy as np

from app.demo import world
from app.demo.binding_probe import NUM_BINDING_SLOTS, binding_labels
from app.demo.data import ExampleMaker, collate, collate_blocks
from app.demo.position_probe import IGNORE

SIDE = 16
RED_CIRCLE = world.Obj("circle", "red", "large", "top left")
BLUE_SQUARE = world.Obj("square", "blue", "small", "bottom right")
SCENE = world.Scene("white", (RED_CIRCLE, BLUE_SQUARE))
NONE = [len(world.COLORS), len(world.SHAPES), len(world.SIZES)]


def cell(row: int, col: int) -> int:
    return row * SIDE + col


def test_cells_name_the_object_of_their_place_and_empty_places_none():
    labels = binding_labels(SCENE, None, SIDE)
    assert labels.shape == (SIDE * SIDE, NUM_BINDING_SLOTS)
    red = [world.COLORS.index("red"), world.SHAPES.index("circle"), world.SIZES.index("large")]
    blue = [world.COLORS.index("blue"), world.SHAPES.index("square"), world.SIZES.index("small")]
    # world.CELL_SPANS: pixel rows/columns 0-24 | 24-44 | 44-64, i.e. grid cells 0-5 | 6-10 | 11-15
    assert labels[cell(0, 0)].tolist() == red and labels[cell(5, 5)].tolist() == red
    assert labels[cell(15, 15)].tolist() == blue and labels[cell(11, 11)].tolist() == blue
    for empty in (cell(0, 6), cell(8, 8), cell(10, 15), cell(15, 0)):
        assert labels[empty].tolist() == NONE
    assert (labels == red).all(1).sum() == 36 and (labels == blue).all(1).sum() == 25


def test_only_what_the_prompt_fixes_is_labelled():
    # places left open: which object a cell belongs to is not known
    open_places = binding_labels(SCENE, world.parse_prompt("a red circle and a blue square"), SIDE)
    assert (open_places == IGNORE).all()
    # places stated, sizes not: sizes unlabelled on the objects' cells only
    stated = world.parse_prompt("a red circle at the top left and a blue square at the bottom right")
    labels = binding_labels(SCENE, stated, SIDE)
    assert labels[cell(0, 0)].tolist() == [world.COLORS.index("red"), 0, IGNORE]
    assert labels[cell(8, 8)].tolist() == NONE
    # one of two places stated: still open
    half = world.parse_prompt("a red circle at the top left and a blue square")
    assert (binding_labels(SCENE, half, SIDE) == IGNORE).all()


def test_examples_label_only_their_output_canvas_and_batches_carry_it(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(2)
    uncond_token = prompts.text("<uncondition>")[0]
    labelled_kinds = set()
    for kind in ("generate", "edit", "inpaint", "ask", "think"):
        for _ in range(12):
            e = maker.make(rng, kind)
            labelled = (e.binding != IGNORE).any(-1) if e.binding is not None else None
            if labelled is None or not labelled.any():
                continue
            labelled_kinds.add(kind)
            assert not labelled[: e.prefix_len].any()  # never the prompt or a source image
            assert labelled[e.prefix_len:].all()
            assert uncond_token not in e.ids[: e.prefix_len].tolist()
    # drawings with places fixed (thinking or stated), edits' and inpaintings' results; never text
    assert labelled_kinds == {"generate", "edit", "inpaint"}
    examples = [maker.make(rng, "edit"), maker.make(rng, "ask")]
    batch = collate(examples, prompts.ids.mask, prompts.ids.eos, rng)
    assert batch.binding.shape == (*batch.clean.shape, NUM_BINDING_SLOTS)
    assert batch.binding[0, : len(examples[0].ids)].tolist() == examples[0].binding.tolist()
    assert (batch.binding[1] == IGNORE).all()
    blocks = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "blocks")
    e = blocks.make(rng, "edit")
    batch = collate_blocks([e], prompts.ids.mask, prompts.ids.eos, rng)
    # the clean copies repeat the canvas, so they repeat its labels
    assert (batch.binding[0] != IGNORE).any(-1).sum() > SIDE * SIDE


def test_training_with_the_binding_probe_logs_it_and_saves_a_plain_model(tmp_path):
    from app.demo.train import train
    from app.engine.checkpoint import load_model

    summary = train(tmp_path / "out", steps=2, batch_size=2, seed=0, lr=1e-3, threads=1,
                    checkpoint_every=0, task_mix={"generate": 1.0}, image_layout="canvas",
                    binding_aux=1.0)
    assert summary["binding_aux"] == 1.0 and "binding_acc" in summary["log"][0]
    log = json.loads((tmp_path / "out" / "training_log.json").read_text())
    assert log["binding_aux"] == 1.0
    model = load_model(tmp_path / "out")
    assert not any("read" in name for name, _ in model.named_parameters())
