"""Auxiliary training signal for answer thinking: one attention head learns to look, from the
answer's first token, at the object the question asks about in the description.

Answer thinking's text step (tasks.answer_from_description) reads "what color is the square"
after "a large red square at the top left and a large blue circle at the right ...". Answering
means finding the phrase whose shape is "square" (a match by content, no fixed RoPE offset
finds it) and reading its colour. Trained without help the demo model never found the match:
from true descriptions of two-object scenes it named the other object's attribute half of the
time, at every learning rate and mix tried (session 20 of issue 3), as it never found an edit's
source cell without the copy head (app/demo/copy_head.py).

Here head POINTER_HEAD of layer POINTER_LAYER gets a cross-entropy on its attention, at the
answer's first position, towards the last token of that object's phrase: its position word in
a spelled-out description (tasks.spell_out), or the phrase token itself. The last token is the
one that has read its whole phrase (block-causal attention lets a token see the ones before
it). An "is there" question about an absent object points at the sequence's first token, where
heads park when nothing matches. Questions about the whole picture (how many, background,
describe) have no target.

The head's own output is left to the model: trained with the pointer alone (1500 text steps at
1e-3 from the shipped folder) the demo answered 252 of 274 questions right from true
descriptions, against 230 before and 237 after the same steps without the pointer; a read-out
loss on the head's output (as the copy head has) added nothing (253). Training scaffolding: the
shipped folder is a plain llada2_moe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.demo import world
from app.demo.position_probe import IGNORE

POINTER_LAYER = 2  # after two layers every phrase's last token has read its phrase
POINTER_HEAD = 1  # head 0 of that layer is the copy head's (copy_head.py)
NOTHING_FOUND = 0  # the key of "is there" questions about an absent object
# The question pointer: one layer before the answer pointer, so what it brings to the answer's
# first position (what the question asks about) is there to form that pointer's query.
QUESTION_LAYER = 1
QUESTION_HEAD = 1


def pointer(prompt: Sequence[int], description: Sequence[int],
            spans: Sequence[tuple[int, int]], scene: world.Scene,
            question: str) -> tuple[int, int] | None:
    """(query, key) of one answer-thinking example, or None when the question has no object.
    prompt: the whole prompt (the answer starts right after it); description: the description's
    ids as the prompt holds them; spans: per scene object, the [start, end) of its phrase in
    `description`."""
    query = len(prompt)
    obj = world.question_object(scene, question)
    if obj is None:
        if world.answer_question(scene, question) == "no":
            return query, NOTHING_FOUND
        return None
    end = spans[scene.objects.index(obj)][1]
    return query, _find(prompt, description) + end - 1


def question_pointer(prompt: Sequence[int], question: Sequence[int],
                     bare_question: Sequence[int]) -> tuple[int, int]:
    """(query, key): from the answer's first position to the question's last word.
    question: the question's ids as the prompt holds them; bare_question: the ids of the same
    question without its closing punctuation ("?"), which must tokenize as a prefix of them.

    Why: the answer pointer's query must say which object to look for, and that is the
    question's last word (the shape in "what color is the circle", "where is the red circle",
    "is there a red circle", the place in "what shape is at the top left"); after one layer it
    has read the words before it ("red circle"). Unsupervised, this hop and the answer pointer's
    are each useless without the other, and the answer pointer alone stayed near chance on
    which of two objects a question names (session 21 of issue 3)."""
    question, bare = list(question), list(bare_question)
    if not bare or question[: len(bare)] != bare:
        raise ValueError("the question without its punctuation is not a prefix of the question")
    start = _find(prompt, question)
    return len(prompt), start + len(bare) - 1


def targets(pointers: Sequence[tuple[int, int] | None], length: int) -> torch.Tensor:
    """[B, length]: at each row's query index its key index, IGNORE elsewhere (the layout
    CopyHead.loss takes)."""
    out = torch.full((len(pointers), length), IGNORE, dtype=torch.long)
    for row, found in enumerate(pointers):
        if found is not None:
            out[row, found[0]] = found[1]
    return out


def _find(seq: Sequence[int], part: Sequence[int]) -> int:
    seq, part = list(seq), list(part)
    for i in range(len(seq) - len(part) + 1):
        if seq[i: i + len(part)] == part:
            return i
    raise ValueError("the description is not in the prompt")
