"""One token per object phrase (world.object_phrase_names, app/demo/object_tokens.py): the
tokenizer reads a full phrase as one token, training ties its rows to its words' rows, and a
saved folder holds plain summed rows that resume exactly."""

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from app.demo import world
from app.demo.object_tokens import TIED, ObjectTokenTie
from app.demo.text_tokenizer import decode_words, train_text_tokenizer
from app.demo.train import build_assets, fresh_model, train

CAPTION = "a large red circle at the top left and a small blue square at the top on a white background"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_text_tokenizer(world.vocabulary(),
                                world.phrase_names() + world.object_phrase_names())


def test_every_object_phrase_names_one_whole_object():
    names = world.object_phrase_names()
    assert len(set(names)) == len(world.SIZES) * len(world.COLORS) * len(world.SHAPES) * len(
        world.POSITIONS)
    for name in names[::37]:
        (obj,) = world.parse_prompt(name).objects
        assert None not in (obj.size, obj.color, obj.shape, obj.position)


def test_a_full_phrase_is_one_token_and_a_partial_one_stays_words(tok):
    enc = tok.encode(CAPTION.capitalize() + ".")
    assert enc.tokens[:3] == ["a large red circle at the top left", "and",
                              "a small blue square at the top"]  # not "... at the top" + "left"
    assert enc.tokens[3:] == ["on", "a", "white background", "."]
    assert decode_words(tok, enc.ids[:-1]) == CAPTION
    assert tok.encode("a red circle at the top left").tokens == [
        "a", "red", "circle", "at", "the", "top left"]


def test_the_tie_sums_words_and_trains_them_through_the_phrase():
    tokenizer, codec, config = build_assets(seed=0, object_tokens=True)
    model = fresh_model(config, seed=0, codec=codec)
    tie = ObjectTokenTie.from_tokenizer(tokenizer)
    assert tie is not None and len(tie.phrase_ids) == len(world.object_phrase_names())
    tie.zero_residual(model)
    phrase = tokenizer.token_to_id("a small green triangle at the bottom")
    parts = [tokenizer.token_to_id(w) for w in ("small", "green", "triangle", "bottom")]
    params = dict(model.named_parameters())
    for name in TIED:
        table = tie.effective(params[name])
        assert torch.allclose(table[phrase], params[name][parts].sum(0))

    model.requires_grad_(True)
    ids = torch.tensor([[phrase, config.extra["mask_token_id"]]])
    tie(model, ids).sum().backward()  # the phrase alone in the input
    embed = params[TIED[0]].grad
    assert all(embed[p].abs().sum() > 0 for p in parts)  # the words learn from the phrase

    saved = {n: tie.effective(params[n]).detach().clone() for n in TIED}
    raw = {n: params[n].detach().clone() for n in TIED}
    with tie.materialised(model):
        for name in TIED:
            assert torch.equal(params[name], saved[name])
    for name in TIED:
        assert torch.equal(params[name], raw[name])  # restored for training


def test_a_folder_saves_summed_rows_and_resumes_to_the_same_weights(tmp_path):
    options = dict(batch_size=1, seed=0, lr=1e-2, threads=1, checkpoint_every=0,
                   task_mix={"think": 1.0}, image_layout="canvas")
    first = train(tmp_path / "first", steps=2, object_tokens=True, **options)
    assert first["object_tokens"] is True
    tok = Tokenizer.from_file(str(tmp_path / "first" / "tokenizer.json"))
    assert tok.encode(CAPTION).tokens[0] == "a large red circle at the top left"
    train(tmp_path / "again", steps=0, init=tmp_path / "first", **options)
    before = load_file(str(tmp_path / "first" / "model.safetensors"))
    after = load_file(str(tmp_path / "again" / "model.safetensors"))
    for name in TIED:  # residuals on load, summed again on save: no double counting
        assert torch.allclose(before[name], after[name], atol=1e-6)
