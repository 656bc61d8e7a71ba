"""Word-level text tokenizer for the ShapesWorld demo model, built with Hugging Face `tokenizers`.

The world's language is a few dozen words, so one id per lowercased word is enough and keeps
sequences short. Special tokens come first so they get the lowest, fixed ids (0..72) whatever the
corpus; the caller saves the result with `tok.save(path)` as tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.trainers import WordLevelTrainer

from app.engine import tasks

EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
UNK_TOKEN = "[UNK]"
IMAGE_START, IMAGE_END = "<|image|>", "<|/image|>"
BOI_TOKEN = "<boi>"
ROLE_START, ROLE_END = "<role>", "</role>"
UNCONDITION_TOKEN = "<uncondition>"
NUM_RESERVED = 64  # grid-size tokens
RESERVED_TOKENS = tuple(f"<|reserved_token_{i}|>" for i in range(NUM_RESERVED))

# Order matters: a token's id is its index here.
SPECIAL_TOKENS: tuple[str, ...] = (
    EOS_TOKEN, MASK_TOKEN, UNK_TOKEN, IMAGE_START, IMAGE_END, BOI_TOKEN, ROLE_START, ROLE_END,
    UNCONDITION_TOKEN, *RESERVED_TOKENS,
)

ROLE_WORDS = ("SYSTEM", "HUMAN", "ASSISTANT")
# The engine's prompt templates (app/engine/tasks.py), so every system sentence is in vocabulary.
SYSTEM_PROMPTS: dict[str, str] = {
    "t2i": tasks.SYSTEM_T2I,
    "t2i_thinking": tasks.SYSTEM_T2I_THINKING,
    "edit": tasks.SYSTEM_EDIT,
    "edit_thinking": tasks.SYSTEM_EDIT_THINKING,
    "understand": tasks.SYSTEM_UNDERSTAND,
    "understand_thinking": tasks.SYSTEM_UNDERSTAND_THINKING,
    "inpaint": tasks.SYSTEM_INPAINT,
}

# WordPiece's decoder joins tokens with single spaces and glues on tokens that start with its
# prefix. "#_" mixes punctuation and a word character, which the Whitespace pre-tokenizer never
# puts in one token, so nothing is ever glued.
_NEVER_A_PREFIX = "#_"


def _always_included() -> Iterator[str]:
    yield from ROLE_WORDS
    yield from SYSTEM_PROMPTS.values()


def train_text_tokenizer(
    corpus: Iterable[str], phrases: Sequence[str] = (), rewrites: Sequence[tuple[str, str]] = ()
) -> Tokenizer:
    """A WordLevel tokenizer over every word in `corpus` (plus the role words and system prompts).

    Lowercases, splits on whitespace and punctuation ("circle?" -> "circle", "?"); unknown words
    map to [UNK]. Word ids are ordered by frequency then alphabetically, so the same corpus always
    gives the same ids. `phrases`: multi-word names that become one token each, with ids after
    the words in the given order (matched as whole words, case-insensitively, with single
    spaces; any other spacing falls back to the separate words). `rewrites`: (old, new) literal
    replacements applied to the lowercased text before splitting (saved in tokenizer.json, so
    every caller tokenizes the same way)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    set_rewrites(tok, rewrites)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix=_NEVER_A_PREFIX, cleanup=False)
    # normalized=False: special tokens match verbatim, before lowercasing and splitting.
    specials = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    trainer = WordLevelTrainer(
        vocab_size=10_000_000, min_frequency=0, show_progress=False, special_tokens=specials
    )

    def texts() -> Iterator[str]:
        yield from _always_included()
        yield from corpus

    tok.train_from_iterator(texts(), trainer=trainer)
    tok.add_special_tokens(specials)  # already in the vocab; makes sure they are never split
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == i, token  # ids the model config relies on
    if phrases:
        tok.add_tokens([AddedToken(p, single_word=True, normalized=True) for p in phrases])
    return tok


def set_rewrites(tok: Tokenizer, rewrites: Sequence[tuple[str, str]]) -> None:
    """Make `tok` lowercase, then apply the (old, new) literal `rewrites`, before splitting words.
    Ids stay as they are, so a trained model's tokenizer can take new rewrites."""
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), *(normalizers.Replace(old, new) for old, new in rewrites)]
    )


def decode_words(tok: Tokenizer, ids: Sequence[int]) -> str:
    """Text of `ids` without special tokens: the words joined by single spaces."""
    return " ".join(tok.decode(list(ids), skip_special_tokens=True).split())
