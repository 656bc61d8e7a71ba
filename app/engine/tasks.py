"""Token layouts of every task, from the LLaDA2.0-Uni prompt templates.

Templates and special tokens: ../shared/spec/llada2_uni.md §4. One code path serves the real
model and the ShapesWorld demo: special ids are looked up by their strings in tokenizer.json,
falling back to the ids of config.json (`eos_token_id`, `mask_token_id`) and the spec's
defaults (§4.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

# llada2_uni.md §4.3, §4.5, §4.6, §4.7: system sentences. Inpainting has no official template;
# ours mirrors text-to-image with its own system sentence.
SYSTEM_T2I = "You are a text-to-image generation assistant."
SYSTEM_T2I_THINKING = "You are a text-to-image generation assistant with a thinking process."
SYSTEM_EDIT = "You are an image editing assistant."
# Not in the reference (its thinking mode is text-to-image only, §4.4): thinking for edits and
# questions. Both start from the model's own description of the picture (§4.6 with
# DESCRIBE_REQUEST); an edit then rewrites the description by the instruction and draws the
# result as text to image after thinking (§4.4 phase 2); a question is answered from the
# description. The two middle steps are text only.
SYSTEM_EDIT_THINKING = "You are an image editing assistant with a thinking process."
DESCRIBE_REQUEST = "Describe the image"
SYSTEM_INPAINT = "You are an image inpainting assistant."
SYSTEM_UNDERSTAND = "You are a multimodal understanding assistant."
SYSTEM_UNDERSTAND_THINKING = (
    "You are a multimodal understanding assistant with a thinking process.")
SYSTEM_CHAT = "detailed thinking off"
UNCONDITION = "<uncondition>"

# llada2_uni.md §4.1: ids of the real LLaDA2.0-Uni vocabulary, used when the tokenizer lacks them.
DEFAULT_IDS = {
    "<|image|>": 156901, "<|/image|>": 156902, "<boi>": 156904,
    "eos": 156892, "mask": 156895,
}
EOS_STRINGS = ("<|endoftext|>", "<|eos|>", "</s>")
MASK_STRINGS = ("<|mask|>", "<|MASK|>", "<mask>")
# A phrase token: a non-special added token of at least this many words ("a small red circle at
# the top left", the demo's object phrases). Two-word names ("top left") are names, not phrases.
PHRASE_MIN_WORDS = 3
# config.json key (our extension): answer thinking reads the description with phrase tokens
# spelled out in words (the demo sets it; see `answer_from_description`).
SPELL_OUT_KEY = "spell_out_descriptions"


@dataclass
class SpecialIds:
    eos: int
    mask: int
    soi: int  # <|image|>
    eoi: int  # <|/image|>
    boi: int  # <boi>
    image_offset: int  # image code k has id image_offset + k
    num_codes: int


@dataclass
class Layout:
    """prefix (fixed tokens) then `canvas_len` output positions; `canvas` holds fixed cells."""

    prefix: list[int]
    canvas_len: int
    uncond_prefix: list[int] | None = None


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer, config_extra: dict, num_codes: int, vocab_size: int):
        self.tokenizer = tokenizer
        offset = config_extra.get("image_token_offset")
        if offset is None:
            raise ValueError("config.json: image_token_offset is required for image tasks")
        self.ids = SpecialIds(
            eos=self._lookup(EOS_STRINGS, config_extra.get("eos_token_id"), DEFAULT_IDS["eos"]),
            mask=self._lookup(MASK_STRINGS, config_extra.get("mask_token_id"), DEFAULT_IDS["mask"]),
            soi=self._lookup(("<|image|>",), None, DEFAULT_IDS["<|image|>"]),
            eoi=self._lookup(("<|/image|>",), None, DEFAULT_IDS["<|/image|>"]),
            boi=self._lookup(("<boi>",), None, DEFAULT_IDS["<boi>"]),
            image_offset=offset,
            num_codes=min(num_codes, vocab_size - offset),
        )
        self.spell_out_descriptions = bool(config_extra.get(SPELL_OUT_KEY, False))
        self._spellings: dict[int, list[int]] | None = None

    @classmethod
    def for_model(cls, tokenizer: Tokenizer, config, codec) -> PromptBuilder:
        """The prompt builder of a model folder: its tokenizer, its config (LLaDA2MoeConfig) and
        its image codec (None: a text-only model)."""
        return cls(tokenizer, config.extra, codec.num_codes if codec is not None else 0,
                   config.vocab_size)

    def _lookup(self, strings, config_id, default) -> int:
        if config_id is not None:
            return int(config_id)
        for s in strings:
            found = self.tokenizer.token_to_id(s)
            if found is not None:
                return found
        return default

    # ---- pieces ----------------------------------------------------------------------------
    def text(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_special_tokens=False).ids

    def spell_out(self, ids: list[int]) -> list[int]:
        """`ids` with every phrase token (PHRASE_MIN_WORDS) replaced by its words, tokenized as
        the same text would be by a tokenizer without phrase tokens; other ids unchanged."""
        if self._spellings is None:
            self._spellings = self._phrase_spellings()
        out: list[int] = []
        for tid in ids:
            out.extend(self._spellings.get(int(tid), [int(tid)]))
        return out

    def _phrase_spellings(self) -> dict[int, list[int]]:
        phrases = {tid: tok.content for tid, tok in self.tokenizer.get_added_tokens_decoder().items()
                   if not tok.special and len(tok.content.split()) >= PHRASE_MIN_WORDS}
        if not phrases:
            return {}
        spec = json.loads(self.tokenizer.to_str())
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] not in phrases]
        words = Tokenizer.from_str(json.dumps(spec))
        return {tid: words.encode(text, add_special_tokens=False).ids
                for tid, text in phrases.items()}

    def unknown_words(self, s: str) -> list[str]:
        """Words the tokenizer maps to its unknown token (the demo warns about them)."""
        enc = self.tokenizer.encode(s, add_special_tokens=False)
        unk = self.tokenizer.token_to_id("[UNK]")
        if unk is None:
            return []
        return [s[a:b] for tid, (a, b) in zip(enc.ids, enc.offsets, strict=True) if tid == unk]

    def grid_token(self, n: int) -> int:
        # §4.1: [S] encodes the reserved tokens as text to avoid BPE splits; so do we.
        ids = self.text(f"<|reserved_token_{n}|>")
        if len(ids) != 1:
            raise ValueError(f"tokenizer has no single token for grid size {n}")
        return ids[0]

    def image_header(self, h: int, w: int) -> list[int]:
        """§4.2: <|image|><|reserved_token_h|><|reserved_token_w|><boi>."""
        return [self.ids.soi, self.grid_token(h), self.grid_token(w), self.ids.boi]

    def image_block(self, grid: np.ndarray) -> list[int]:
        h, w = grid.shape
        codes = (grid.reshape(-1).astype(np.int64) + self.ids.image_offset).tolist()
        return self.image_header(h, w) + codes + [self.ids.eoi]

    def _turn(self, system: str, human: list[int]) -> list[int]:
        # §4.3 spacing: one space after SYSTEM's </role> and after the system sentence.
        return (self.text(f"<role>SYSTEM</role> {system} <role>HUMAN</role>") + human
                + self.text("<role>ASSISTANT</role>"))

    # ---- tasks -----------------------------------------------------------------------------
    def text_to_image(self, prompt: str, h: int, w: int) -> Layout:
        header = self.image_header(h, w)
        return Layout(
            prefix=self._turn(SYSTEM_T2I, self.text(prompt)) + header,
            canvas_len=h * w,
            uncond_prefix=self._turn(SYSTEM_T2I, self.text(UNCONDITION)) + header,
        )

    def thinking_prompt(self, prompt: str) -> list[int]:
        """§4.4 phase 1: the thinking system sentence, no image header; the model writes its
        thinking (text) until `<boi>` or eos."""
        return self._turn(SYSTEM_T2I_THINKING, self.text(prompt))

    def thinking_stop_ids(self) -> tuple[int, ...]:
        """Where phase-1 thinking ends: the image header the model starts writing (§4.4)."""
        return (self.ids.soi, self.ids.boi)

    def thinking_to_image(self, prompt: str, thinking: list[int], h: int, w: int) -> Layout:
        """§4.4 phase 2: the phase-1 prompt, the thinking tokens, then the image header.

        The spec infers the model writes `<|image|><h><w><boi>` itself (open question 13); we
        append an explicit header(h, w) after the thinking text, which is the same sequence when
        the model wrote the right one and keeps the grid the user asked for when it did not."""
        return self._after_thinking(self.thinking_prompt(prompt), thinking,
                                    self._turn(SYSTEM_T2I_THINKING, self.text(UNCONDITION)), h, w)

    def describe(self, images: list[np.ndarray]) -> list[int]:
        """What edit and answer thinking start from: §4.6 asking for a description."""
        return self.understand(images, DESCRIBE_REQUEST)

    def rewrite_description(self, instruction: str, description: list[int]) -> list[int]:
        """Edit thinking's text step: §4.5's message with the picture's description standing
        for the image block, after the instruction; the model writes the edited picture's
        description (then eos), which is drawn with `thinking_to_image`.
        The description ends the message so that the answer's k-th token sits a fixed distance
        after the description's k-th, whatever the instruction's length: most of a rewrite is
        a copy, and a fixed distance is what RoPE attention finds easily (with the description
        first, the demo model often copied the wrong object into an answer, issue 3).
        (The description sits in the message, not after an eos in the answer: text after eos
        taught the demo model that eos is followed by more text, and its answers stopped
        ending.)"""
        return self._turn(SYSTEM_EDIT_THINKING, self.text(instruction) + list(description))

    def answer_from_description(self, question: str, description: list[int]) -> list[int]:
        """Answer thinking's text step: §4.6's layout with the picture's description where the
        image block stands; the model writes the answer.
        With `spell_out_descriptions` (config.json) the description's phrase tokens are spelled
        out in words: the answer then copies a word that stands next to the question's words
        ("what color is the square" -> the word before "square"), where a phrase token would
        have to be taken apart (the demo answered 84 % of questions right from true phrase-token
        descriptions, issue 3)."""
        if self.spell_out_descriptions:
            description = self.spell_out(list(description))
        return self._turn(SYSTEM_UNDERSTAND_THINKING, list(description) + self.text(question))

    def _after_thinking(self, phase1: list[int], thinking: list[int], uncond_turn: list[int],
                        h: int, w: int) -> Layout:
        header = self.image_header(h, w)
        return Layout(prefix=phase1 + list(thinking) + header, canvas_len=h * w,
                      uncond_prefix=uncond_turn + header)

    def thinking_text_ids(self, generated: list[int]) -> list[int]:
        """The thinking proper: generated tokens before the first image header, eos or mask."""
        ends = {self.ids.soi, self.ids.boi, self.ids.eos, self.ids.mask}
        out = []
        for tid in generated:
            if tid in ends:
                break
            out.append(int(tid))
        return out

    def edit(self, source: np.ndarray, instruction: str) -> Layout:
        """§4.5: source image block + instruction; output grid = source grid."""
        h, w = source.shape
        block, header = self.image_block(source), self.image_header(h, w)
        return Layout(
            prefix=self._turn(SYSTEM_EDIT, block + self.text(instruction)) + header,
            canvas_len=h * w,
            uncond_prefix=self._turn(SYSTEM_EDIT, block + self.text(UNCONDITION)) + header,
        )

    def inpaint(self, prompt: str, h: int, w: int) -> Layout:
        """The canvas carries the source cells; only masked cells are free."""
        header = self.image_header(h, w)
        return Layout(
            prefix=self._turn(SYSTEM_INPAINT, self.text(prompt)) + header,
            canvas_len=h * w,
            uncond_prefix=self._turn(SYSTEM_INPAINT, self.text(UNCONDITION)) + header,
        )

    def understand(self, images: list[np.ndarray], question: str) -> list[int]:
        """§4.6: image blocks at the start of the message, then the question."""
        blocks = [t for grid in images for t in self.image_block(grid)]
        return self._turn(SYSTEM_UNDERSTAND, blocks + self.text(question))

    def chat(self, message: str) -> list[int]:
        """§4.7: the `<role>` concatenation with the default system prompt (single turn)."""
        return self._turn(SYSTEM_CHAT, self.text(message))

    def decode_text(self, ids: list[int]) -> str:
        ids = [i for i in ids if i not in (self.ids.eos, self.ids.mask)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
