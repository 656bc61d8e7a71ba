"""Thinking-mode training examples (llada2_uni.md §4.4): phase 1 writes the full caption and the
image header; phase 2 draws after prompt + caption + header, with the whole scene labelled."""

import copy

import numpy as np
import pytest

from app.demo import world
from app.demo.data import ANSWER_LENGTH, ExampleMaker, collate
from app.demo.position_probe import IGNORE, PositionProbe, grid_labels
from app.demo.scene_probe import scene_slots
from app.engine.tasks import SYSTEM_T2I_THINKING

CELLS = 256


def test_thinking_text_is_the_full_caption_then_the_image_header(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(4)
    for _ in range(20):
        mirror = copy.deepcopy(rng)
        scene = world.sample_scene(mirror)
        prompt = world.sample_prompt(scene, mirror)
        e = maker.make(rng, "think")
        start = prompts.thinking_prompt(prompt)
        answer = prompts.text(world.caption(scene)) + prompts.image_header(16, 16)
        assert e.ids[: len(start)].tolist() == start
        assert e.ids[len(start):len(start) + len(answer)].tolist() == answer
        assert (e.ids[len(start) + len(answer):] == prompts.ids.eos).all()
        assert len(e.ids) == len(start) + ANSWER_LENGTH
        assert e.free.tolist() == [False] * len(start) + [True] * ANSWER_LENGTH
        assert e.scene is None  # no image to label
        assert world.satisfies(scene, world.parse_prompt(prompt))


def test_half_the_drawings_follow_a_thinking_prefix_with_the_whole_scene_labelled(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    system = prompts.text(f"<role>SYSTEM</role> {SYSTEM_T2I_THINKING} <role>HUMAN</role>")
    assistant = prompts.text("<role>ASSISTANT</role>")
    rng = np.random.default_rng(5)
    thinking = 0
    for _ in range(60):
        e = maker.make(rng, "generate")
        prefix = e.ids[: e.prefix_len].tolist()
        if prefix[: len(system)] != system:
            continue
        thinking += 1
        assert prefix[-4:] == prompts.image_header(16, 16)
        canvas = e.ids[e.prefix_len:] - prompts.ids.image_offset
        if prompts.text("<uncondition>")[0] in prefix:
            assert (e.scene[e.prefix_len:] == IGNORE).all()
            continue
        # the thinking states everything, so every cell carries the scene the canvas shows
        shown = world.parse_image(codec.decode(canvas.reshape(16, 16)))
        assert (e.scene[e.prefix_len:] == scene_slots(shown)).all()
        turn_end = max(i for i in range(len(prefix))
                       if prefix[i:i + len(assistant)] == assistant) + len(assistant)
        assert prompts.decode_text(prefix[turn_end:-4]) == world.caption(shown)
    assert 15 <= thinking <= 45


def test_a_thinking_batch_gives_the_grid_probe_nothing_to_learn(assets):
    """The header at the end of a thinking answer has no canvas after it: no grid labels, and a
    zero probe loss rather than NaN."""
    import torch

    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(6)
    batch = collate([maker.make(rng, "think") for _ in range(3)], prompts.ids.mask,
                    prompts.ids.eos, rng)
    labels = grid_labels(batch.clean, None, prompts.ids.boi, 16)
    assert (labels == IGNORE).all()
    hidden = torch.randn(*batch.clean.shape, 8, requires_grad=True)
    loss, accuracy = PositionProbe(8, 16).loss(hidden, labels)
    assert torch.isfinite(loss) and loss.item() == 0.0 and accuracy == 0.0
    loss.backward()


def test_edit_and_answer_thinking_are_text_steps_from_the_pictures_description(assets):
    """Our extension of thinking to edits and questions: from the picture's description (its
    caption, as the model writes it for "describe the image"), an edit writes the edited
    picture's description and a question its answer. Text only: no image block."""
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         text_pad_weight=0.1, answer_scene=True)
    rng = np.random.default_rng(7)
    eos = prompts.ids.eos
    for kind in ("edit_think", "ask_think"):
        for _ in range(6):
            mirror = copy.deepcopy(rng)
            scene = world.sample_scene(mirror)
            described = prompts.text(world.caption(scene))
            if kind == "edit_think":
                instruction, target = world.sample_edit(scene, mirror)
                start = prompts.rewrite_description(instruction, described)
                written = prompts.text(world.caption(target))
            else:
                question, answer = world.sample_qa(scene, mirror)
                start = prompts.answer_from_description(question, described)
                written = prompts.text(answer)
            e = maker.make(rng, kind)
            assert e.kind == kind and prompts.ids.boi not in e.ids.tolist()
            assert described[0] in start and eos not in start
            assert e.ids.tolist() == start + written + [eos] * (ANSWER_LENGTH - len(written))
            assert e.free.tolist() == [False] * len(start) + [True] * ANSWER_LENGTH
            assert (e.weights[len(start) + len(written) + 1:] == 0.1).all()
            # the scene probe labels the answer with the scene it states or is about
            labelled = (e.scene != IGNORE).any(-1)
            assert labelled[len(start):].all() and not labelled[:len(start)].any()


def test_a_rewrite_reads_the_description_last_so_copies_keep_one_distance(assets):
    """Edit thinking's text step reads the instruction, then the description right before the
    assistant marker: whatever the instruction's length, each answer token then sits the same
    distance (description + marker) after the description token it would copy."""
    config, tokenizer, codec, prompts = assets
    scene = world.Scene(background="blue", objects=(
        world.Obj("circle", "red", "small", "top left"),
        world.Obj("square", "green", "large", "bottom right")))
    described = prompts.text(world.caption(scene))
    tail = prompts.text("<role>ASSISTANT</role>")
    for instruction in ("remove the square", "add a small white triangle at the center",
                        "change the background to yellow"):
        start = prompts.rewrite_description(instruction, described)
        assert start[-len(tail):] == tail
        assert start[-len(tail) - len(described):-len(tail)] == described
        before = start[:-len(tail) - len(described)]
        assert before[-len(prompts.text(instruction)):] == prompts.text(instruction)


def test_two_object_rate_sets_the_share_of_two_object_scenes(assets):
    config, tokenizer, codec, prompts = assets
    counts = {}
    for rate in (None, 0.0, 0.9):
        maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                             two_object_rate=rate)
        rng = np.random.default_rng(6)
        two = 0
        for _ in range(60):
            e = maker.make(rng, "think")
            two += " and " in prompts.decode_text(e.ids[e.free].tolist())
        counts[rate] = two
    assert counts[0.0] == 0
    assert 45 <= counts[0.9] <= 60  # binomial(60, 0.9): 54 expected
    assert 15 <= counts[None] <= 45  # the world's own draw: half
    # the default leaves the world's random numbers as they were
    rng, mirror = np.random.default_rng(7), np.random.default_rng(7)
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    scene = world.sample_scene(mirror)
    assert maker.make(rng, "think").ids[-ANSWER_LENGTH:].tolist()[:5] == (
        prompts.text(world.caption(scene))[:5])
    with pytest.raises(ValueError, match="two_object_rate"):
        ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas", two_object_rate=1.5)


def test_near_miss_rate_asks_is_there_and_leaves_other_runs_unchanged(assets):
    config, tokenizer, codec, prompts = assets
    vocab = tokenizer.get_vocab_size()
    always = ExampleMaker(prompts, codec, vocab, "canvas", near_miss_rate=1.0)
    rng = np.random.default_rng(9)
    for kind in ("ask", "ask_think"):
        for _ in range(6):
            e = always.make(rng, kind)
            prompt = tokenizer.decode(e.ids[~e.free].tolist())
            assert "is there a" in prompt.lower(), prompt
    plain = ExampleMaker(prompts, codec, vocab, "canvas")
    off = ExampleMaker(prompts, codec, vocab, "canvas", near_miss_rate=0.0)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(6):
        assert plain.make(a, "ask").ids.tolist() == off.make(b, "ask").ids.tolist()
    with pytest.raises(ValueError, match="near_miss_rate"):
        ExampleMaker(prompts, codec, vocab, "canvas", near_miss_rate=1.5)


def test_pick_examples_ask_about_one_of_two_objects_from_a_fully_masked_answer(assets):
    """ask_pick / edit_pick (session 23): the questions and edits that must pick one of two
    objects by the word the text names, with the whole answer masked (the sampler's first
    step) and the padding after the first eos weighted as in every text answer."""
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         text_pad_weight=0.1)
    rng = np.random.default_rng(23)
    eos, mask = prompts.ids.eos, prompts.ids.mask
    questions, edits = set(), set()
    for kind in ("ask_pick", "edit_pick"):
        examples = [maker.make(rng, kind) for _ in range(40)]
        for e in examples:
            start = len(e.ids) - ANSWER_LENGTH
            written = e.ids[start:].tolist()
            length = written.index(eos)
            assert e.kind == kind and e.full_mask
            assert e.free.tolist() == [False] * start + [True] * ANSWER_LENGTH
            assert (e.weights[: start + length + 1] == 1.0).all()
            assert (e.weights[start + length + 1:] == 0.1).all()
            text = prompts.decode_text(e.ids[:start].tolist())
            if kind == "ask_pick":
                question = text.split("background")[-1]
                questions.add(question.split()[0] + " " + question.split()[1])
            else:
                edits.add(next(w for w in ("make", "move", "remove") if f" {w} the " in text))
        batch = collate(examples, mask, eos, np.random.default_rng(0))
        for i, e in enumerate(examples):
            start = len(e.ids) - ANSWER_LENGTH
            assert (batch.noisy[i, start:len(e.ids)] == mask).all()
    assert questions == {"what color", "where is", "is there"}
    assert edits == {"make", "move", "remove"}


def test_describe_full_is_the_pictures_description_from_a_fully_masked_answer(assets):
    """describe_full (session 23): what answer and edit thinking start from, the description
    of a picture (tasks.describe), trained from a fully masked answer like the one-step
    decode that writes it."""
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(29)
    eos, mask = prompts.ids.eos, prompts.ids.mask
    examples = []
    for _ in range(8):
        mirror = copy.deepcopy(rng)
        scene = world.sample_scene(mirror)
        e = maker.make(rng, "describe_full")
        start = prompts.describe([maker.codes(scene)])
        written = prompts.text(world.caption(scene))
        assert e.full_mask and prompts.ids.boi in start
        assert e.ids.tolist() == start + written + [eos] * (ANSWER_LENGTH - len(written))
        examples.append(e)
    batch = collate(examples, mask, eos, np.random.default_rng(0))
    for i, e in enumerate(examples):
        assert (batch.noisy[i, len(e.ids) - ANSWER_LENGTH:len(e.ids)] == mask).all()
