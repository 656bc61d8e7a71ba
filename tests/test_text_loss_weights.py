"""Text answers are padded with eos to a fixed length; the padding after the first eos is
down-weighted in the loss so an answer's few content tokens are not drowned out."""

import numpy as np

from app.demo.data import ANSWER_LENGTH, TEXT_PAD_WEIGHT, ExampleMaker, collate
from tests.probe_fixtures import made_examples


def test_answer_and_first_eos_weigh_one_and_the_padding_after_it_less(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas")
    rng = np.random.default_rng(11)
    for kind in ("ask", "think"):
        for _ in range(10):
            e = maker.make(rng, kind)
            answer_start = len(e.ids) - ANSWER_LENGTH
            answer = e.ids[answer_start:]
            first_eos = answer_start + int(np.flatnonzero(answer == prompts.ids.eos)[0])
            assert (e.weights[: first_eos + 1] == 1.0).all()
            assert (e.weights[first_eos + 1:] == TEXT_PAD_WEIGHT).all()
            assert first_eos + 1 < len(e.ids)  # every answer here has padding to down-weight


def test_collate_carries_the_weights_and_images_weigh_one(assets):
    prompts = assets[3]
    asks, rng = made_examples(assets, "ask", 3, 12, text_pad_weight=0.25)
    batch = collate(asks, prompts.ids.mask, prompts.ids.eos, rng)
    for i, e in enumerate(asks):
        assert batch.weights[i, : len(e.ids)].numpy().tolist() == e.weights.tolist()
        assert 0.25 in e.weights.tolist()
    drawings, rng = made_examples(assets, "generate", 3, 13)
    assert (collate(drawings, prompts.ids.mask, prompts.ids.eos, rng).weights == 1.0).all()


def test_weight_one_restores_the_plain_mean(assets):
    config, tokenizer, codec, prompts = assets
    maker = ExampleMaker(prompts, codec, tokenizer.get_vocab_size(), "canvas",
                         text_pad_weight=1.0)
    e = maker.make(np.random.default_rng(13), "ask")
    assert (e.weights == 1.0).all()
