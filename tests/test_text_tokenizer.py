import pytest
from tokenizers import Tokenizer

from app.demo.text_tokenizer import (
    SPECIAL_TOKENS,
    SYSTEM_PROMPTS,
    decode_words,
    train_text_tokenizer,
)

CORPUS = [
    "a small red circle at the top left on a blue background",
    "What color is the circle?",
    "red",
    "make the circle green",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_text_tokenizer(CORPUS)


def test_special_tokens_have_the_lowest_ids_in_order(tok):
    assert len(SPECIAL_TOKENS) == 9 + 64
    assert SPECIAL_TOKENS[:3] == ("<|endoftext|>", "<|mask|>", "[UNK]")
    assert SPECIAL_TOKENS[-1] == "<|reserved_token_63|>"
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == i
    word_ids = [i for w, i in tok.get_vocab().items() if w not in SPECIAL_TOKENS]
    assert min(word_ids) == len(SPECIAL_TOKENS)


def test_chat_string_encoding(tok):
    text = "<role>HUMAN</role>What color is the circle?<role>ASSISTANT</role>"
    enc = tok.encode(text)
    assert enc.tokens == ["<role>", "human", "</role>", "what", "color", "is", "the", "circle",
                          "?", "<role>", "assistant", "</role>"]
    assert enc.ids[0] == enc.ids[9] == tok.token_to_id("<role>")
    assert "[UNK]" not in enc.tokens


def test_special_tokens_are_never_split_or_lowercased(tok):
    enc = tok.encode("<|image|><|reserved_token_16|><|mask|><|mask|><|/image|><|endoftext|>")
    assert enc.ids == [3, 9 + 16, 1, 1, 4, 0]
    assert tok.token_to_id("<ROLE>") is None
    assert tok.encode("<ROLE>").ids != [tok.token_to_id("<role>")]


def test_unknown_words_map_to_unk(tok):
    enc = tok.encode("red zebra")
    assert enc.tokens == ["red", "[UNK]"]
    assert enc.ids[1] == tok.token_to_id("[UNK]") == 2


def test_role_words_and_system_prompts_always_in_vocab(tok):
    vocab = tok.get_vocab()
    assert {"system", "human", "assistant"} <= set(vocab)
    for prompt in SYSTEM_PROMPTS.values():
        assert "[UNK]" not in tok.encode(prompt).tokens, prompt


def test_decode_joins_words_with_single_spaces(tok):
    ids = tok.encode("<role>ASSISTANT</role>A small  red circle?<|endoftext|>").ids
    assert tok.decode(ids, skip_special_tokens=True) == "assistant a small red circle ?"
    assert decode_words(tok, ids) == "assistant a small red circle ?"


def test_training_is_deterministic():
    a = train_text_tokenizer(CORPUS).get_vocab()
    b = train_text_tokenizer(list(reversed(CORPUS))).get_vocab()
    assert a == b


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = Tokenizer.from_file(str(path))
    text = "<role>HUMAN</role>Make the circle GREEN<|mask|> zebra"
    assert loaded.encode(text).ids == tok.encode(text).ids
    assert loaded.get_vocab() == tok.get_vocab()
    ids = loaded.encode("what color is the circle?").ids
    assert loaded.decode(ids, skip_special_tokens=True) == "what color is the circle ?"


def test_phrases_become_single_tokens_only_where_written_as_such():
    phrases = ["top left", "blue background"]
    tok = train_text_tokenizer(CORPUS, phrases)
    enc = tok.encode("A red circle at the Top Left on a blue background?")
    assert enc.tokens == ["a", "red", "circle", "at", "the", "top left", "on", "a",
                          "blue background", "?"]
    # phrase ids come after every word, in the given order; specials keep theirs
    words = train_text_tokenizer(CORPUS).get_vocab_size()
    assert [tok.token_to_id(p) for p in phrases] == [words, words + 1]
    assert tok.token_to_id("<|mask|>") == 1
    # whole words only; other spacing falls back to the separate words
    assert tok.encode("the top lefty").tokens[:2] == ["the", "top"]
    assert tok.encode("top  left").tokens == ["top", "left"]
    assert tok.encode("what color is the background").tokens[-1] == "background"
    assert decode_words(tok, enc.ids) == "a red circle at the top left on a blue background ?"


def test_rewrites_make_a_background_colour_the_background_token():
    from app.demo import world

    corpus = [" ".join(world.vocabulary())]
    tok = train_text_tokenizer(corpus, world.phrase_names(), world.text_rewrites())
    enc = tok.encode("Change the background to Orange?")
    assert enc.tokens == ["change", "the", "background", "to", "orange background", "?"]
    assert enc.ids[-2] == tok.token_to_id("orange background")
    # written out in full it stays one background token, not two
    assert tok.encode("change the background to orange background").tokens[-2:] == \
        ["to", "orange background"]
    # object colours and other "to" phrases are untouched
    assert tok.encode("make the circle orange").tokens[-1] == "orange"
    assert tok.encode("move the circle to the top left").tokens[-2:] == ["the", "top left"]
    # the rule travels in tokenizer.json, so a loaded tokenizer applies it too
    loaded = Tokenizer.from_str(tok.to_str())
    assert loaded.encode("change the background to red").ids == \
        tok.encode("change the background to red").ids


def test_retokenize_adds_the_rewrites_to_a_folder_keeping_ids(tmp_path):
    from app.demo import world
    from app.demo.retokenize import add_text_rewrites, main

    plain = train_text_tokenizer([" ".join(world.vocabulary())], world.phrase_names())
    plain.save(str(tmp_path / "tokenizer.json"))
    text = "change the background to green"
    assert plain.encode(text).tokens[-1] == "green"
    main([str(tmp_path)])
    rewritten = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert rewritten.get_vocab() == plain.get_vocab()
    assert rewritten.encode(text).tokens[-1] == "green background"
    add_text_rewrites(tmp_path)  # twice is the same as once
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(text).ids == \
        rewritten.encode(text).ids
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        add_text_rewrites(tmp_path / "missing")


def test_shipped_tokenizer_reads_a_new_background_colour_as_a_background():
    from app.paths import DEFAULT_MODEL

    tok = Tokenizer.from_file(str(DEFAULT_MODEL / "tokenizer.json"))
    ids = tok.encode("Change the background to blue").ids
    assert ids[-1] == tok.token_to_id("blue background")
    assert tok.encode("make the square blue").ids[-1] == tok.token_to_id("blue")
