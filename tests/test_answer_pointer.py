"""Answer thinking reads spelled-out descriptions (tasks.PromptBuilder.spell_out) and trains a
pointer head towards the object a question asks about (app/demo/answer_pointer.py)."""

import json

import numpy as np
import pytest

from app.demo import answer_pointer, world
from app.demo.data import ExampleMaker
from app.demo.position_probe import IGNORE
from app.engine.tasks import SPELL_OUT_KEY, PromptBuilder


def _spelling(assets, on: bool) -> PromptBuilder:
    config, tokenizer, codec, _ = assets
    extra = {**config.extra, SPELL_OUT_KEY: on}
    return PromptBuilder(tokenizer, extra, codec.num_codes, config.vocab_size)


def test_spell_out_turns_object_phrases_into_words_and_keeps_two_word_names(assets):
    prompts = _spelling(assets, True)
    tokenizer = prompts.tokenizer
    caption = "a small red circle at the top left and a large blue square at the center " \
              "on a white background"
    ids = prompts.text(caption)
    assert tokenizer.id_to_token(ids[0]) == "a small red circle at the top left"  # a phrase token
    spelled = prompts.spell_out(ids)
    words = [tokenizer.id_to_token(i) for i in spelled]
    assert words[:7] == ["a", "small", "red", "circle", "at", "the", "top left"]
    assert "white background" in words and len(spelled) > len(ids)
    assert prompts.decode_text(spelled) == prompts.decode_text(ids) == caption
    plain = prompts.text("what color is the square")
    assert prompts.spell_out(plain) == plain  # no phrase tokens: unchanged


def test_answer_thinking_spells_out_only_when_the_folder_says_so(assets):
    described = _spelling(assets, False).text("a large green triangle at the bottom on a red "
                                              "background")
    question = "What color is the triangle?"
    kept = _spelling(assets, False).answer_from_description(question, described)
    spelled = _spelling(assets, True).answer_from_description(question, described)
    assert described[0] in kept and described[0] not in spelled
    assert len(spelled) == len(kept) + 6  # one phrase token became seven words


@pytest.mark.parametrize("kind", world.QA_KINDS)
def test_question_object_is_the_object_whose_attribute_answers(kind):
    rng = np.random.default_rng(11)
    seen = 0
    for _ in range(40):
        scene = world.sample_scene(rng, n_objects=2)
        try:
            question, answer = world.sample_qa(scene, rng, kind)
        except ValueError:
            continue
        seen += 1
        obj = world.question_object(scene, question)
        if kind in ("count", "background_color", "describe") or answer == "no":
            assert obj is None
        else:
            assert obj in scene.objects
            attribute = {"color_of_shape": obj.color, "shape_at_position": obj.shape,
                         "position_of": obj.position, "is_there": "yes"}[kind]
            assert attribute == answer
    assert seen >= 20


@pytest.mark.parametrize("spelled", [True, False])
def test_the_pointer_goes_from_the_answer_to_the_asked_objects_phrase(assets, spelled):
    config, tokenizer, codec, _ = assets
    prompts = _spelling(assets, spelled)
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         two_object_rate=1.0)
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(60):
        e = maker.make(rng, "ask_think")
        if e.pointer is None:
            continue
        query, key = e.pointer
        assert not e.free[query - 1] and e.free[query]  # the answer's first position
        answer = tokenizer.id_to_token(int(e.ids[query]))
        if key == answer_pointer.NOTHING_FOUND:
            assert answer == "no"
            kinds.add("absent")
            continue
        token = tokenizer.id_to_token(int(e.ids[key]))
        if spelled:  # the question's last word in the phrase; the answer is one of its words
            assert token == tokenizer.id_to_token(int(e.ids[e.question_pointer[1]]))
            first = key - 3 if token in world.SHAPES else key - 6  # "a small red circle at the"
            phrase = [tokenizer.id_to_token(int(i)) for i in e.ids[first: first + 7]]
            assert phrase[6] in world.POSITIONS
            assert phrase[0] == "a" and phrase[4:6] == ["at", "the"]
            assert answer in phrase + ["yes"]
        else:  # the object's phrase token
            assert token.startswith("a ") and token.split(" at the ")[1] in world.POSITIONS
            assert answer == "yes" or answer in token
        kinds.add("found")
    assert kinds == {"absent", "found"}


@pytest.mark.parametrize("spelled", [True, False])
def test_the_question_pointer_goes_from_the_answer_to_the_questions_last_word(assets, spelled):
    config, tokenizer, codec, _ = assets
    maker = ExampleMaker(_spelling(assets, spelled), codec, tokenizer.get_vocab_size(), "canvas",
                         two_object_rate=1.0, near_miss_rate=0.3)
    rng = np.random.default_rng(9)
    last_words = set()
    for _ in range(80):
        e = maker.make(rng, "ask_think")
        if e.pointer is None:  # no object asked about: no question pointer either
            assert e.question_pointer is None
            continue
        query, key = e.question_pointer
        assert query == e.pointer[0]  # the same query as the answer pointer
        word = tokenizer.id_to_token(int(e.ids[key]))
        assert word in world.SHAPES or word in world.POSITIONS
        # the question ends there, up to its punctuation; then the assistant's turn opens
        after = [tokenizer.id_to_token(int(i)) for i in e.ids[key + 1: query]]
        assert after in (["<role>", "assistant", "</role>"],
                         ["?", "<role>", "assistant", "</role>"])
        last_words.add("shape" if word in world.SHAPES else "place")
    assert last_words == {"shape", "place"}


def test_the_question_pointer_refuses_a_bare_question_that_is_no_prefix():
    with pytest.raises(ValueError, match="prefix"):
        answer_pointer.question_pointer([1, 2, 3, 4], [3, 4], [4])


def test_pointer_targets_put_each_key_at_its_query():
    assert answer_pointer.targets([None, (3, 1), (4, 0)], 6).tolist() == [
        [IGNORE] * 6, [IGNORE] * 3 + [1] + [IGNORE] * 2, [IGNORE] * 4 + [0, IGNORE]]


def test_training_with_the_pointer_logs_it_and_saves_the_spelling(tmp_path):
    from app.demo.train import train
    from app.engine.checkpoint import load_model

    summary = train(tmp_path / "out", steps=2, batch_size=4, seed=0, lr=1e-3, threads=1,
                    checkpoint_every=0, task_mix={"ask_think": 1.0}, image_layout="canvas",
                    pointer_aux=1.0, question_pointer_aux=1.0, pointer_readout=1.0,
                    spell_out_descriptions=True, object_tokens=True)
    assert summary["pointer_aux"] == 1.0 and summary["spell_out_descriptions"]
    assert summary["question_pointer_aux"] == 1.0 and summary["pointer_readout"] == 1.0
    assert {"pointer_acc", "question_pointer_acc", "pointer_readout_acc"} <= set(
        summary["log"][0])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config[SPELL_OUT_KEY] is True
    assert not any("pointer" in name for name in load_model(tmp_path / "out").state_dict())


def test_the_read_out_needs_the_pointer_it_reads(tmp_path):
    from app.demo.train import train

    with pytest.raises(ValueError, match="--pointer-readout needs the answer pointer"):
        train(tmp_path / "out", steps=1, batch_size=2, seed=0, lr=1e-3, threads=1,
              task_mix={"ask_think": 1.0}, image_layout="canvas", pointer_readout=1.0)
