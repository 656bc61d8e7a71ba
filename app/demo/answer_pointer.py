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
answer's first position, towards that object's phrase: in a spelled-out description
(tasks.spell_out) the word the question ends on ("circle" of "a small red circle at the
center" for "what color is the circle"), else the phrase token itself. A second head one
layer earlier (question_pointer) brings that word of the question to the answer's position,
so the answer pointer matches a word with the same word. Session 21 first pointed at the
phrase's last word (its place) and the head stayed at 0.75 on held-out batches, with answers
at chance on which of two objects was asked about: the place word had not read its shape. An
"is there" question about an absent object points at the sequence's first token, where heads
park when nothing matches. Questions about the whole picture (how many, background,
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
import torch.nn.functional as F

from app.demo import world
from app.demo.copy_head import CopyHead
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
            question: str, word: int | None = None) -> tuple[int, int] | None:
    """(query, key) of one answer-thinking example, or None when the question has no object.
    prompt: the whole prompt (the answer starts right after it); description: the description's
    ids as the prompt holds them; spans: per scene object, the [start, end) of its phrase in
    `description`; word: the id of the question's last word (question_pointer's key). The key is
    that word inside the object's phrase where the phrase holds it (a spelled-out description:
    "circle" in "a small red circle at the center"), so the match is of a token with its own
    kind, else the phrase's last token (a phrase token, which holds every word)."""
    query = len(prompt)
    obj = world.question_object(scene, question)
    if obj is None:
        if world.answer_question(scene, question) == "no":
            return query, NOTHING_FOUND
        return None
    start, end = spans[scene.objects.index(obj)]
    phrase = list(description[start:end])
    at = phrase.index(word) if word in phrase else len(phrase) - 1
    return query, _find(prompt, description) + start + at


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


def readout_loss(head: CopyHead, targets: torch.Tensor,
                 clean: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy of what the head carries to each query, read out through the model's final
    norm and lm_head (the head's `readout`), towards the token at the query in `clean` (the
    answer's first word), and how often the read-out names it: the head must bring the answer
    from the object it looks at, not only look there."""
    keep = targets != IGNORE
    if head.values is None or not keep.any():
        return torch.zeros(()), 0.0
    words = clean[keep]
    logits = head.readout(head.carried(keep)).float()
    return F.cross_entropy(logits, words), float((logits.argmax(-1) == words).float().mean())
