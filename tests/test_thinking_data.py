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


def test_edit_thinking_writes_the_result_caption_and_edits_can_follow_it(assets):
    """Our extension of thinking to edits: phase 1 sees the source image and the instruction and
    writes the edited picture's caption; phase 2 draws after it, the source still in view."""
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         edit_thinking_rate=1.0)
    rng = np.random.default_rng(7)
    for _ in range(8):
        mirror = copy.deepcopy(rng)
        scene = world.sample_scene(mirror)
        instruction, target = world.sample_edit(scene, mirror)
        e = maker.make(rng, "edit_think")
        source = maker.codes(scene)
        start = prompts.edit_thinking_prompt(source, instruction)
        answer = prompts.text(world.caption(target)) + prompts.image_header(16, 16)
        assert e.ids[: len(start) + len(answer)].tolist() == start + answer
        assert e.free.sum() == ANSWER_LENGTH
        labelled = (e.scene != IGNORE).any(-1)  # the source image only, not the answer's header
        assert labelled.sum() == CELLS and not labelled[len(start):].any()
    for _ in range(8):
        mirror = copy.deepcopy(rng)
        scene = world.sample_scene(mirror)
        instruction, target = world.sample_edit(scene, mirror)
        e = maker.make(rng, "edit")
        layout = prompts.edit_after_thinking(maker.codes(scene), instruction,
                                             prompts.text(world.caption(target)))
        assert e.ids[: e.prefix_len].tolist() in (layout.prefix, layout.uncond_prefix)


def test_answer_thinking_writes_the_caption_then_answers_after_it(assets):
    """Our extension of thinking to questions: one sequence, the picture's caption, eos, the
    answer. Phase 1 writes all of it; phase 2 is given the caption and writes the answer."""
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         text_pad_weight=0.1)
    rng = np.random.default_rng(8)
    phases = set()
    for _ in range(12):
        mirror = copy.deepcopy(rng)
        scene = world.sample_scene(mirror)
        question, answer = world.sample_qa(scene, mirror)
        e = maker.make(rng, "ask_think")
        start = prompts.understand_thinking([maker.codes(scene)], question)
        caption = prompts.text(world.caption(scene))
        written = caption + [prompts.ids.eos] + prompts.text(answer)
        assert e.ids[: len(start) + len(written)].tolist() == start + written
        given = len(start) + (len(caption) + 1 if not e.free[len(start)] else 0)
        phases.add(given > len(start))
        assert not e.free[:given].any() and e.free[given:].all()
        assert e.ids[given:].tolist()[: len(written) + len(start) - given] == (
            written[given - len(start):])
        # the eos between caption and answer is not padding: weight 1 up to the answer's eos
        first_pad = len(start) + len(written) + 1
        assert (e.weights[:first_pad] == 1).all() and (e.weights[first_pad:] == 0.1).all()
        assert (len(e.ids) - given) % ANSWER_LENGTH == 0
        if given > len(start):
            assert e.ids[:given].tolist() == prompts.answer_after_thinking(
                [maker.codes(scene)], question, caption)
    assert phases == {False, True}


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
