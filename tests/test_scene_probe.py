"""The scene probe labels every image cell with the scene its image shows (source images) or must
show (output canvases, as far as the prompt says), in both training layouts; its loss counts only
labelled slots and trains only the layers up to the probe."""

import numpy as np
import torch

from app.demo import world
from app.demo.data import GRID_SIDE, ExampleMaker, collate, collate_blocks
from app.demo.position_probe import LayerOutput
from app.demo.scene_probe import (
    IGNORE,
    NO_OBJECT,
    NUM_SLOTS,
    SCENE_PROBE_LAYER,
    SLOT_CLASSES,
    SceneProbe,
    scene_slots,
)
from app.engine.tasks import SYSTEM_T2I_THINKING
from tests.probe_fixtures import tiny_trainable_model

CELLS = GRID_SIDE * GRID_SIDE
SCENE = world.Scene("blue", (world.Obj("circle", "red", "small", "top left"),
                             world.Obj("square", "white", "large", "bottom")))


def test_slots_of_a_whole_scene_and_of_what_a_prompt_states():
    whole = scene_slots(SCENE)
    assert whole.tolist() == [
        world.COLORS.index("blue"),
        world.COLORS.index("red"), world.SHAPES.index("circle"), world.SIZES.index("small"),
        world.POSITIONS.index("top left"),
        world.COLORS.index("white"), world.SHAPES.index("square"), world.SIZES.index("large"),
        world.POSITIONS.index("bottom"),
    ]
    # a prompt without sizes, positions and background: only colours and shapes are known
    stated = scene_slots(SCENE, world.parse_prompt("a red circle and a white square"))
    assert stated.tolist() == [IGNORE, whole[1], whole[2], IGNORE, IGNORE,
                               whole[5], whole[6], IGNORE, IGNORE]
    one = world.Scene("green", SCENE.objects[:1])
    slots = scene_slots(one, world.parse_prompt("a red circle at the top left on a green "
                                                "background"))
    assert slots[0] == world.COLORS.index("green") and slots[4] == whole[4]
    assert slots[5] == NO_OBJECT and (slots[6:] == IGNORE).all()
    assert all(0 <= v < n for v, n in zip(whole, SLOT_CLASSES, strict=True))


def test_examples_label_source_images_and_canvases(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(0)
    for kind, images in (("generate", 1), ("edit", 2), ("inpaint", 1), ("ask", 1)):
        for _ in range(6):
            e = maker.make(rng, kind)
            labelled = (e.scene != IGNORE).any(-1)
            starts = np.flatnonzero(e.ids == prompts.ids.boi) + 1
            assert len(starts) == images
            cells = np.zeros(len(e.ids), dtype=bool)
            for start in starts:
                cells[start:start + CELLS] = True
            assert not labelled[~cells].any()  # text and headers are never labelled
            for start in starts:  # one scene per image: every cell carries the same slots
                block = e.scene[start:start + CELLS]
                assert (block == block[0]).all()
            if kind in ("edit", "ask"):  # the source image is always fully known
                source = e.scene[starts[0]]
                assert (source[:6] != IGNORE).all()  # background, first object, second's colour
                assert ((source[6:] != IGNORE).all()) == (source[5] != NO_OBJECT)
            if kind == "edit" and labelled[starts[1]]:
                assert not (e.scene[starts[0]] == e.scene[starts[1]]).all()  # edits change


def test_answer_labels_carry_the_stated_or_shown_scene(assets):
    """--answer-scene: thinking answers carry what their prompt states, per object in order;
    question answers their image's whole scene; off, the same draws leave answers unlabelled."""
    config, tokenizer, codec, prompts = assets
    vocab = tokenizer.get_vocab_size()
    on = ExampleMaker(prompts, codec, vocab, "canvas", answer_scene=True)
    off = ExampleMaker(prompts, codec, vocab, "canvas")
    head = len(prompts.text(f"<role>SYSTEM</role> {SYSTEM_T2I_THINKING} <role>HUMAN</role>"))
    tail = len(prompts.text("<role>ASSISTANT</role>"))
    for kind in ("think", "ask"):
        rng_on, rng_off = np.random.default_rng(7), np.random.default_rng(7)
        for _ in range(12):
            e, plain = on.make(rng_on, kind), off.make(rng_off, kind)
            assert e.ids.tolist() == plain.ids.tolist()  # the flag draws no random numbers
            answer = np.flatnonzero(e.free)
            prompt_len = answer[0]
            labels = e.scene[answer]
            assert (labels == labels[0]).all()  # one scene for the whole answer
            if plain.scene is not None:
                assert (plain.scene[answer] == IGNORE).all()
                assert plain.scene[:prompt_len].tolist() == e.scene[:prompt_len].tolist()
            if kind == "ask":
                starts = np.flatnonzero(e.ids == prompts.ids.boi) + 1
                assert labels[0].tolist() == e.scene[starts[0]].tolist()  # the image's scene
            else:
                said = tokenizer.decode(e.ids[head:prompt_len - tail].tolist())
                stated = world.parse_prompt(said)
                colours = [o.color for o in stated.objects]
                assert labels[0][1] == world.COLORS.index(colours[0])
                if len(colours) > 1:
                    assert labels[0][5] == world.COLORS.index(colours[1])
                else:
                    assert labels[0][5] == NO_OBJECT
                assert (labels[0][0] == IGNORE) == (stated.background is None)


def test_unconditional_rows_leave_the_canvas_unlabelled(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(60):
        e = maker.make(rng, "generate")
        uncond = prompts.text("<uncondition>")[0] in e.ids[: e.prefix_len].tolist()
        labelled = (e.scene[e.prefix_len:] != IGNORE).any()
        assert labelled != uncond
        seen += uncond
    assert seen > 0


def test_both_layouts_carry_the_labels_into_the_batch(assets):
    config, tokenizer, codec, prompts = assets
    rng = np.random.default_rng(1)
    canvas = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    examples = [canvas.make(rng, "edit"), canvas.make(rng, "ask")]
    batch = collate(examples, prompts.ids.mask, prompts.ids.eos, rng)
    assert batch.scene.shape == (*batch.clean.shape, NUM_SLOTS)
    for i, e in enumerate(examples):
        assert batch.scene[i, : len(e.ids)].tolist() == e.scene.tolist()
        assert (batch.scene[i, len(e.ids):] == IGNORE).all()
    blocks = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "blocks")
    examples = [blocks.make(rng, "edit") for _ in range(2)]
    batch = collate_blocks(examples, prompts.ids.mask, prompts.ids.eos, rng)
    for i, e in enumerate(examples):
        n = len(e.ids)
        assert batch.scene[i, :n].tolist() == e.scene.tolist()
        # the clean copy repeats the canvas cells, so it repeats their labels
        canvas_slots = e.scene[e.prefix_len]
        copy = batch.scene[i, n:]
        copy = copy[(copy != IGNORE).any(-1)]
        if (canvas_slots != IGNORE).any():
            assert len(copy) >= CELLS and (copy[-CELLS:] == torch.from_numpy(canvas_slots)).all()


def test_loss_counts_labelled_slots_and_trains_only_the_layers_below(assets):
    config, tokenizer, codec, prompts = assets
    model = tiny_trainable_model(config)
    small = model.config
    probe = SceneProbe(small.hidden_size)
    probed = LayerOutput(model.model.layers[SCENE_PROBE_LAYER])
    layout = prompts.text_to_image("a red circle", GRID_SIDE, GRID_SIDE)
    ids = torch.tensor([layout.prefix + [prompts.ids.mask] * CELLS])
    labels = torch.full((1, ids.shape[1], NUM_SLOTS), IGNORE)
    labels[0, len(layout.prefix):] = torch.from_numpy(
        scene_slots(world.Scene("blue", SCENE.objects[:1]), world.parse_prompt("a red circle")))
    model(ids)
    loss, accuracy = probe.loss(probed.value, labels)
    loss.backward()
    assert loss.item() > 0 and 0.0 <= accuracy <= 1.0
    layers = model.model.layers
    assert layers[SCENE_PROBE_LAYER].attention.query_key_value.weight.grad is not None
    assert all(p.grad is None for p in layers[SCENE_PROBE_LAYER + 1].parameters())
    # nothing labelled: a zero loss that still backpropagates, and no accuracy
    empty, acc = probe.loss(probed.value, torch.full_like(labels, IGNORE))
    assert empty.item() == 0.0 and acc == 0.0
    probed.remove()
    # a read-out that is right on every labelled slot scores 1.0, whatever the ignored slots
    with torch.no_grad():
        probe.read.weight.zero_()
        probe.read.bias.zero_()
        offsets = np.cumsum((0,) + SLOT_CLASSES[:-1])
        for slot, value in enumerate(labels[0, -1].tolist()):
            if value != IGNORE:
                probe.read.bias[offsets[slot] + value] = 5.0
    _, perfect = probe.loss(torch.zeros(1, ids.shape[1], small.hidden_size), labels)
    assert perfect == 1.0
