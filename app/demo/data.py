"""Training examples for the demo model: every task of the world, laid out by the engine's own
prompt builder (app.engine.tasks), so training and inference share one token layout.

An example is a clean sequence plus which positions are free (to be noised and predicted) and
the attention segments. Everything is block-causal like LLaDA2.0-Uni's own decoding loop
(../shared/spec/llada2_uni.md §5.2: blocks of 32 columns over the whole sequence, the prompt
included; block i sees blocks <= i). Text answers are trained with all blocks noised at once;
image canvases (256 codes, 8+ blocks) with the block-diffusion layout of `collate_blocks`, where
every noisy block sees clean copies of the blocks before it, exactly as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.demo import answer_pointer, world
from app.demo.binding_probe import NUM_BINDING_SLOTS, binding_labels
from app.demo.scene_probe import IGNORE, NUM_SLOTS, label_images, scene_slots
from app.engine.tasks import PromptBuilder

TASK_MIX = {"generate": 0.32, "edit": 0.18, "inpaint": 0.12, "ask": 0.28, "think": 0.1,
            "edit_think": 0.0, "ask_think": 0.0, "ask_pick": 0.0, "edit_pick": 0.0,
            "describe_full": 0.0}
# The text steps that must pick one of two objects by the word the text names (issue 3,
# session 23): questions and edits about one object of a two-object scene.
PICK_QUESTION_KINDS = ("color_of_shape", "position_of", "is_there")
PICK_EDIT_KINDS = ("recolor", "move", "remove")
ANSWER_LENGTH = 32  # gen_length of text answers; answers are padded with eos to this length
BLOCK_LENGTH = 32
# Loss weight of a text answer's eos padding after its first eos. Unweighted, the ~20 trivially
# predictable padding tokens of a 32-token answer outweigh its 1-3 content tokens ~10x in the
# mean loss; measured on the model trained that way: background colour questions 5/15 right
# (answered with the object's colour), "where is" 4/15.
TEXT_PAD_WEIGHT = 0.1
UNCOND_RATE = 0.1  # prompt dropout for classifier-free guidance
# Share of text-to-image examples laid out as thinking mode's phase 2 (llada2_uni.md §4.4): the
# prompt, then the full caption as the model's own thinking, then the canvas.
THINKING_RATE = 0.5


@dataclass
class Example:
    ids: np.ndarray  # int64 [S], the clean sequence
    free: np.ndarray  # bool [S], positions the model learns to denoise
    segments: np.ndarray  # int64 [S]
    kind: str
    code_range: tuple[int, int]  # ids of the free positions' vocabulary (for random corruption)
    prefix_len: int = 0  # image outputs: where the canvas starts
    scene: np.ndarray | None = None  # [S, NUM_SLOTS] scene-probe labels (app/demo/scene_probe.py)
    # [S, NUM_BINDING_SLOTS] binding-probe labels of the output canvas (app/demo/binding_probe.py)
    binding: np.ndarray | None = None
    weights: np.ndarray | None = None  # float [S] loss weight per position; None: all 1
    # answer thinking: (answer's first index, index of the asked-about object's last token)
    pointer: tuple[int, int] | None = None  # app/demo/answer_pointer.py
    question_pointer: tuple[int, int] | None = None  # the same module's question_pointer
    full_mask: bool = False  # collate masks the whole answer (the sampler's first step)


class ExampleMaker:
    def __init__(self, prompts: PromptBuilder, codec, text_vocab: int,
                 image_layout: str = "blocks",
                 text_pad_weight: float = TEXT_PAD_WEIGHT, kept_object_weight: float = 1.0,
                 changed_cell_weight: float = 1.0, answer_scene: bool = False,
                 two_object_rate: float | None = None, near_miss_rate: float = 0.0):
        """image_layout: "blocks" (block-causal canvas, for collate_blocks) or "canvas" (the
        whole canvas one segment after the prefix: MaskGIT-style decoding, for collate).
        text_pad_weight: loss weight of text answers' padding after the first eos.
        answer_scene: the scene probe also labels text answers' positions: a thinking answer
        with the scene its prompt states, a question's answer with its image's scene.
        two_object_rate: share of two-object scenes (inpainting aside, which adds an object to
        a one-object scene); None: the world's own draw (half), with its random numbers.
        near_miss_rate: share of question examples (ask, ask_think) that ask "is there" with
        world.sample_is_there's near misses; 0: every question from world.sample_qa."""
        if image_layout not in ("blocks", "canvas"):
            raise ValueError(f"image_layout must be 'blocks' or 'canvas', not {image_layout!r}")
        self.prompts, self.codec, self.text_vocab = prompts, codec, text_vocab
        self.image_layout = image_layout
        self.text_pad_weight = text_pad_weight
        # Edits: loss weight of output cells that keep a source object's code (copying rewarded
        # at the output; app/demo/copy_head.py found an early head's copy goes unused).
        self.kept_object_weight = kept_object_weight
        # ... and of output cells the edit changes: weighting kept objects alone tipped the
        # model into copying everything (issue 3, session 7), so the change is weighted too.
        self.changed_cell_weight = changed_cell_weight
        # Thinking's one-step decode fills every caption slot at once, each from the prompt: the
        # second object's colour slot must find the prompt's second colour (two objects: the
        # thinking kept both objects' attributes for 3 of 15 prompts, session 9). Labelling the
        # answer positions with the stated scene, per object, teaches that binding at layer 1.
        self.answer_scene = answer_scene
        # Two objects are where binding is learned (which colour goes with which place), and
        # where every failing task fails; one object is learned early. (issue 3, session 12)
        if two_object_rate is not None and not 0.0 <= two_object_rate <= 1.0:
            raise ValueError(f"two_object_rate must be in [0, 1], not {two_object_rate}")
        self.two_object_rate = two_object_rate
        # "Is there a red circle" answered "yes" 12/15 whatever the picture (session 16): the
        # answer must match both words against the picture, and sample_qa's "no" questions
        # rarely share either word with an object that is there.
        if not 0.0 <= near_miss_rate <= 1.0:
            raise ValueError(f"near_miss_rate must be in [0, 1], not {near_miss_rate}")
        self.near_miss_rate = near_miss_rate
        self.offset = prompts.ids.image_offset
        self.side = world.IMAGE_SIZE // world.PATCH_SIZE

    def codes(self, scene: world.Scene) -> np.ndarray:
        return self.codec.encode(world.render(scene))

    def _scene(self, rng: np.random.Generator) -> world.Scene:
        count = None  # the world's own draw
        if self.two_object_rate is not None:
            count = 2 if rng.random() < self.two_object_rate else 1
        return world.sample_scene(rng, n_objects=count)

    def make(self, rng: np.random.Generator, kind: str | None = None) -> Example:
        if kind is None:
            kind = str(rng.choice(list(TASK_MIX), p=list(TASK_MIX.values())))
        return getattr(self, f"_{kind}")(rng)

    # ---- image outputs -------------------------------------------------------------------
    def _canvas(self, prefix: list[int], target: np.ndarray, free_cells: np.ndarray, kind: str,
                scenes: list[np.ndarray | None] | None = None,
                binding: np.ndarray | None = None):
        """scenes: scene-probe slots per image of the sequence (source images, then the canvas);
        binding: the canvas cells' binding-probe labels."""
        ids = np.array(prefix + (target.reshape(-1) + self.offset).tolist(), dtype=np.int64)
        free = np.zeros(len(ids), dtype=bool)
        free[len(prefix):] = free_cells.reshape(-1)
        if self.image_layout == "canvas":
            segments = (np.arange(len(ids)) >= len(prefix)).astype(np.int64)
        else:
            segments = np.arange(len(ids)) // BLOCK_LENGTH
        span = (self.offset, self.offset + self.codec.num_codes)
        labels = label_images(ids, self.prompts.ids.boi, self.side, scenes or [None])
        bound = None
        if binding is not None:
            bound = np.full((len(ids), NUM_BINDING_SLOTS), IGNORE, dtype=np.int64)
            bound[len(prefix):] = binding
        return Example(ids, free, segments, kind, span, prefix_len=len(prefix), scene=labels,
                       binding=bound)

    def _prefix(self, layout, rng) -> tuple[list[int], bool]:
        """The prompt, or (classifier-free guidance) the unconditional one; and which."""
        uncond = rng.random() < UNCOND_RATE
        return (layout.uncond_prefix if uncond else layout.prefix), uncond

    def _generate(self, rng) -> Example:
        scene = self._scene(rng)
        prompt = world.sample_prompt(scene, rng)
        thinking = rng.random() < THINKING_RATE
        if thinking:  # phase 2: the caption, written in phase 1, states the whole scene
            layout = self.prompts.thinking_to_image(prompt, self._thinking(scene), self.side,
                                                    self.side)
            stated = None
        else:
            layout = self.prompts.text_to_image(prompt, self.side, self.side)
            stated = world.parse_prompt(prompt)
        all_cells = np.ones((self.side, self.side), dtype=bool)
        prefix, uncond = self._prefix(layout, rng)
        slots = None if uncond else scene_slots(scene, stated)
        bound = None if uncond else binding_labels(scene, stated, self.side)
        return self._canvas(prefix, self.codes(scene), all_cells, "generate", [slots], bound)

    def _thinking(self, scene: world.Scene) -> list[int]:
        """What thinking mode writes before drawing: the full caption of a scene the prompt
        allows, which settles every attribute the prompt left open (size, place, background)."""
        return self.prompts.text(world.caption(scene))

    def _thinking_answer(self, scene: world.Scene) -> list[int]:
        """Phase 1's whole answer: the thinking, then the image header where drawing begins."""
        return self._thinking(scene) + self.prompts.image_header(self.side, self.side)

    def _edit(self, rng) -> Example:
        scene = self._scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        source = self.codes(scene)
        layout = self.prompts.edit(source, instruction)
        all_cells = np.ones((self.side, self.side), dtype=bool)
        prefix, uncond = self._prefix(layout, rng)
        slots = [scene_slots(scene), None if uncond else scene_slots(target)]
        bound = None if uncond else binding_labels(target, None, self.side)
        goal = self.codes(target)
        example = self._canvas(prefix, goal, all_cells, "edit", slots, bound)
        if self.kept_object_weight != 1.0 or self.changed_cell_weight != 1.0:
            cells = np.where(kept_object_cells(source, goal), self.kept_object_weight, 1.0)
            cells[source != goal] = self.changed_cell_weight
            example.weights = np.ones(len(example.ids), dtype=np.float32)
            example.weights[example.prefix_len:] = cells.reshape(-1)
        return example

    def _inpaint(self, rng) -> Example:
        example = world.sample_inpaint(world.sample_scene(rng, n_objects=1), rng)
        layout = self.prompts.inpaint(example.prompt, self.side, self.side)
        target = self.codes(example.target_scene)
        prefix, uncond = self._prefix(layout, rng)
        slots = None if uncond else scene_slots(example.target_scene)
        bound = None if uncond else binding_labels(example.target_scene, None, self.side)
        return self._canvas(prefix, target, example.cell_mask, "inpaint", [slots], bound)

    # ---- text outputs --------------------------------------------------------------------
    def _think(self, rng) -> Example:
        """Thinking mode's phase 1 (llada2_uni.md §4.4): from a prompt, the full caption and
        then the image header, where the model stops and drawing begins."""
        scene = self._scene(rng)
        said = world.sample_prompt(scene, rng)
        prompt = self.prompts.thinking_prompt(said)
        stated = scene_slots(scene, world.parse_prompt(said)) if self.answer_scene else None
        return self._text_example(prompt, self._thinking_answer(scene), "think", scene=None,
                                  answer_slots=stated)

    def _edit_think(self, rng) -> Example:
        """Edit thinking's text step (tasks.rewrite_description): from the instruction and the
        picture's description, the edited picture's description. Text only: the picture was
        read into its description (the "describe the image" question teaches that)."""
        scene = self._scene(rng)
        instruction, target = world.sample_edit(scene, rng)
        prompt = self.prompts.rewrite_description(instruction, self._thinking(scene))
        shown = scene_slots(target) if self.answer_scene else None
        return self._text_example(prompt, self._thinking(target), "edit_think", None,
                                  answer_slots=shown)

    def _ask(self, rng) -> Example:
        scene = self._scene(rng)
        question, answer = self._question(scene, rng)
        prompt = self.prompts.understand([self.codes(scene)], question)
        shown = scene_slots(scene) if self.answer_scene else None
        return self._text_example(prompt, self.prompts.text(answer), "ask", scene,
                                  answer_slots=shown)

    def _ask_think(self, rng) -> Example:
        """Answer thinking's text step (tasks.answer_from_description): from the question and
        the picture's description, the answer. Text only, like `_edit_think`."""
        scene = self._scene(rng)
        question, answer = self._question(scene, rng)
        prompt = self.prompts.answer_from_description(question, self._thinking(scene))
        shown = scene_slots(scene) if self.answer_scene else None
        example = self._text_example(prompt, self.prompts.text(answer), "ask_think", None,
                                     answer_slots=shown)
        description, spans = self._read_description(scene)
        asked = answer_pointer.question_pointer(prompt, self.prompts.text(question),
                                                self.prompts.text(question.rstrip("?!. ")))
        example.pointer = answer_pointer.pointer(prompt, description, spans, scene, question,
                                                 word=prompt[asked[1]])
        if example.pointer is not None:  # a question about an object, present or not
            example.question_pointer = asked
        return example

    def _ask_pick(self, rng) -> Example:
        """Answer thinking's text step on the questions that pick one of two objects by its
        shape or colour (PICK_QUESTION_KINDS, "is there" with near misses), from a fully
        masked answer (`_fully_masked`)."""
        scene = world.sample_scene(rng, n_objects=2)
        kind = PICK_QUESTION_KINDS[rng.integers(len(PICK_QUESTION_KINDS))]
        try:
            question, answer = (world.sample_is_there(scene, rng) if kind == "is_there"
                                else world.sample_qa(scene, rng, kind))
        except ValueError:  # both objects share the shape (or colour): nothing to pick by it
            question, answer = world.sample_is_there(scene, rng)
        prompt = self.prompts.answer_from_description(question, self._thinking(scene))
        return self._fully_masked(prompt, self.prompts.text(answer), "ask_pick")

    def _edit_pick(self, rng) -> Example:
        """Edit thinking's text step on the edits that name one of two objects by its shape
        (PICK_EDIT_KINDS), scored like `_ask_pick`."""
        while True:  # two objects of one shape: no instruction can name either by its shape
            scene = world.sample_scene(rng, n_objects=2)
            if scene.objects[0].shape != scene.objects[1].shape:
                break
        kinds = rng.permutation(PICK_EDIT_KINDS)
        instruction, target = world.sample_edit(scene, rng, str(kinds[0]))
        prompt = self.prompts.rewrite_description(instruction, self._thinking(scene))
        return self._fully_masked(prompt, self._thinking(target), "edit_pick")

    def _describe_full(self, rng) -> Example:
        """The picture's description (tasks.describe, where answer and edit thinking start) from
        a fully masked answer, as the one-step decode writes it. Pick batches alone broke it:
        session 23's pilots described 71-80 of 100 pictures exactly (92 before); with a tenth of
        the batches of this kind, 100."""
        scene = self._scene(rng)
        prompt = self.prompts.describe([self.codes(scene)])
        return self._fully_masked(prompt, self._thinking(scene), "describe_full", scene)

    def _fully_masked(self, prompt: list[int], answer: list[int], kind: str,
                      scene: world.Scene | None = None) -> Example:
        """A text example (`_text_example`) whose whole answer starts masked (the sampler's
        first step). Under the usual noise (a random share masked) the pick is a small part of
        a small task's loss; 600 pick batches of these at 1e-3 from the shipped folder took the
        answer probe's swap test from 42 to 71 of 80 (pilot A, docs/demo-model.md session 23).
        The padding keeps its usual weight, as in every text answer."""
        example = self._text_example(prompt, answer, kind, scene)
        example.full_mask = True
        return example

    def _read_description(self, scene: world.Scene) -> tuple[list[int], list[tuple[int, int]]]:
        """The description as answer thinking reads it (spelled out or not, tasks.py), and the
        [start, end) of each object's phrase in it."""
        def read(text: str) -> list[int]:
            ids = self.prompts.text(text)
            return self.prompts.spell_out(ids) if self.prompts.spell_out_descriptions else ids

        phrases = [o.phrase() for o in scene.objects]
        spans = []
        for k in range(len(phrases)):
            start = len(read(" and ".join(phrases[:k]) + " and")) if k else 0
            spans.append((start, len(read(" and ".join(phrases[: k + 1])))))
        return read(world.caption(scene)), spans

    def _question(self, scene: world.Scene, rng) -> tuple[str, str]:
        # rng drawn only with the option on, so runs without it see the same examples as before
        if self.near_miss_rate and rng.random() < self.near_miss_rate:
            return world.sample_is_there(scene, rng)
        return world.sample_qa(scene, rng)

    def _text_example(self, prompt: list[int], answer: list[int], kind: str,
                      scene: world.Scene | None,
                      answer_slots: np.ndarray | None = None) -> Example:
        """A text answer padded with eos to ANSWER_LENGTH; scene: the prompt's one image (the
        answer may end in an image header of its own: thinking, which is not labelled);
        answer_slots: scene-probe labels of every answer position (None: unlabelled)."""
        answer_ids = answer + [self.prompts.ids.eos] * (ANSWER_LENGTH - len(answer))
        ids = np.array(prompt + answer_ids[:ANSWER_LENGTH], dtype=np.int64)
        free = np.zeros(len(ids), dtype=bool)
        free[len(prompt):] = True
        weights = np.ones(len(ids), dtype=np.float32)
        weights[len(prompt) + len(answer) + 1:] = self.text_pad_weight  # the first eos stays 1
        segments = np.arange(len(ids)) // BLOCK_LENGTH
        labels = None
        if scene is not None or answer_slots is not None:
            labels = np.full((len(ids), NUM_SLOTS), IGNORE, dtype=np.int64)
        if scene is not None:
            labels[: len(prompt)] = label_images(np.array(prompt), self.prompts.ids.boi,
                                                 self.side, [scene_slots(scene)])
        if answer_slots is not None:
            labels[len(prompt):] = answer_slots
        return Example(ids, free, segments, kind, (0, self.text_vocab), scene=labels,
                       weights=weights)


def background_code(grid: np.ndarray) -> int:
    """The code of a canvas's background: its most common code (two large objects cover about
    50 of a 16x16 grid's 256 cells)."""
    return int(np.bincount(np.asarray(grid).reshape(-1)).argmax())


def kept_object_cells(source: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """bool, goal's shape: cells an edit keeps (same code in source and goal) that are not the
    source's background."""
    return (source == goal) & (source != background_code(source))


@dataclass
class Batch:
    clean: torch.Tensor  # [B, S]
    noisy: torch.Tensor  # [B, S]
    loss_mask: torch.Tensor  # [B, S] bool: masked or corrupted free positions
    attention: torch.Tensor  # [B, 1, S, S] bool
    scene: torch.Tensor  # [B, S, NUM_SLOTS] scene-probe labels, IGNORE where none
    binding: torch.Tensor  # [B, S, NUM_BINDING_SLOTS] binding-probe labels, IGNORE where none
    weights: torch.Tensor  # [B, S] float loss weight per position


def _probe_labels(examples: list[Example], rows: list[np.ndarray], length: int,
                  field: str, slots: int) -> torch.Tensor:
    """Stack per-row probe labels, the Example attribute `field` (rows[i]: positions of example
    i's labels in its row)."""
    out = np.full((len(examples), length, slots), IGNORE, dtype=np.int64)
    for i, (e, where) in enumerate(zip(examples, rows, strict=True)):
        labels = getattr(e, field)
        if labels is not None:
            out[i, : len(where)] = labels[where]
    return torch.from_numpy(out)


def _scene_and_binding(examples, rows, length) -> tuple[torch.Tensor, torch.Tensor]:
    return (_probe_labels(examples, rows, length, "scene", NUM_SLOTS),
            _probe_labels(examples, rows, length, "binding", NUM_BINDING_SLOTS))


def collate(
    examples: list[Example], mask_id: int, pad_id: int, rng: np.random.Generator,
    corrupt_rate: float = 0.1, mask_schedule: str = "uniform", full_mask_rate: float = 0.0,
) -> Batch:
    """Masked-diffusion noise: each example draws a mask ratio t (uniform, or cosine), masks each
    free position with probability t, and swaps a few unmasked free positions for random tokens (to learn
    self-correction); the loss covers both. full_mask_rate: share of examples masked whole
    (t = 1), the state every drawing starts from: with nothing drawn yet a cell can only read the
    prompt, which is where two objects' colours must be told apart (issue 3, session 12)."""
    length = max(len(e.ids) for e in examples)
    b = len(examples)
    clean = np.full((b, length), pad_id, dtype=np.int64)
    noisy = clean.copy()
    loss = np.zeros((b, length), dtype=bool)
    segments = np.full((b, length), 10**6, dtype=np.int64)
    valid = np.zeros((b, length), dtype=bool)
    weights = np.ones((b, length), dtype=np.float32)
    for i, e in enumerate(examples):
        n = len(e.ids)
        clean[i, :n], segments[i, :n], valid[i, :n] = e.ids, e.segments, True
        if e.weights is not None:
            weights[i, :n] = e.weights
        t = rng.uniform(0.02, 1.0)
        if mask_schedule == "cosine":  # MaskGIT: more weight on heavily masked canvases
            t = max(0.02, float(np.cos(np.pi / 2 * rng.uniform(0.0, 1.0))))
        if e.full_mask or (full_mask_rate and rng.random() < full_mask_rate):
            t = 1.0
        noisy[i, :n], loss[i, :n] = _noise(e.ids, e.free, t, rng, mask_id, corrupt_rate,
                                           e.code_range)
    seg = torch.from_numpy(segments)
    allowed = seg[:, None, :] <= seg[:, :, None]
    attention = (allowed & torch.from_numpy(valid)[:, None, :]).unsqueeze(1)
    scene, binding = _scene_and_binding(examples, [np.arange(len(e.ids)) for e in examples],
                                        length)
    return Batch(torch.from_numpy(clean), torch.from_numpy(noisy), torch.from_numpy(loss),
                 attention, scene, binding, torch.from_numpy(weights))


@dataclass
class BlockBatch(Batch):
    # weights: per position, HARD_CELL_WEIGHT on hard canvas cells
    positions: torch.Tensor  # [B, S'] position ids (the clean copy repeats the canvas positions)


# Loss weight of canvas cells a block cannot copy from the rows above: the first row (it has to
# read the prompt) and cells differing from their upper or left neighbour (object edges). With
# block-causal decoding most cells are easy copies, and unweighted they drown out what matters.
HARD_CELL_WEIGHT = 5.0
GRID_SIDE = 16


def collate_blocks(
    examples: list[Example], mask_id: int, pad_id: int, rng: np.random.Generator,
    corrupt_rate: float = 0.1, mask_schedule: str = "uniform",
    hard_cell_weight: float = HARD_CELL_WEIGHT,
) -> BlockBatch:
    """Block-diffusion training rows (BD3-LM's two-copy layout) for image outputs.

    Row = [prefix | noisy blocks | clean blocks], the two copies covering the blocks from the one
    holding the prompt's end, with the same position ids. Each noisy block draws its own mask
    ratio and sees the prefix, itself, and the *clean* copies of earlier blocks; clean blocks see
    the prefix and clean blocks <= theirs. So one forward trains every block under exactly the
    context it has when the sampler reaches it (tests/test_demo_blocks.py checks this)."""
    # The copies start at the block holding the prompt's end: its prompt tail attends to the noisy
    # canvas there while that block is sampled, and to the clean one afterwards.
    starts = [e.prefix_len // BLOCK_LENGTH * BLOCK_LENGTH for e in examples]
    totals = [2 * len(e.ids) - r for e, r in zip(examples, starts, strict=True)]
    length = max(totals)
    b = len(examples)
    clean = np.full((b, length), pad_id, dtype=np.int64)
    noisy = clean.copy()
    positions = np.zeros((b, length), dtype=np.int64)
    loss = np.zeros((b, length), dtype=bool)
    weights = np.zeros((b, length), dtype=np.float32)
    attention = np.zeros((b, length, length), dtype=bool)
    for i, (e, r) in enumerate(zip(examples, starts, strict=True)):
        n, p, total = len(e.ids), e.prefix_len, totals[i]
        pos = np.concatenate([np.arange(n), np.arange(r, n)])
        block = pos // BLOCK_LENGTH
        part = np.concatenate([np.zeros(r, int), np.ones(n - r, int), np.full(n - r, 2)])
        t = _mask_ratios(rng, int(block[-1]) + 1, mask_schedule)[block[p:n]]
        canvas, loss[i, p:n] = _noise(e.ids[p:], e.free[p:], t, rng, mask_id, corrupt_rate,
                                      e.code_range)
        noisy[i, :total] = np.concatenate([e.ids[:p], canvas, e.ids[r:]])
        clean[i, :total] = np.concatenate([e.ids, e.ids[r:]])
        positions[i, :total] = pos
        weights[i, p:n] = np.where(_hard_cells(e.ids[p:]), hard_cell_weight, 1.0)
        qb, kb = block[:, None], block[None, :]
        qp, kp = part[:, None], part[None, :]
        see_prefix = (kp == 0) & (kb <= qb)
        see_noisy = (kp == 1) & (qp == 1) & (kb == qb)
        see_clean = (kp == 2) & (((qp == 1) & (kb < qb)) | ((qp == 2) & (kb <= qb)))
        attention[i, :total, :total] = see_prefix | see_noisy | see_clean
    # Padding rows attend to themselves only, so softmax never sees an empty row.
    idle = ~attention.any(-1)
    attention[idle[:, :, None] & np.eye(length, dtype=bool)[None]] = True
    # The clean copies repeat the canvas, so they repeat its scene labels too.
    rows = [np.concatenate([np.arange(len(e.ids)), np.arange(r, len(e.ids))])
            for e, r in zip(examples, starts, strict=True)]
    return BlockBatch(torch.from_numpy(clean), torch.from_numpy(noisy), torch.from_numpy(loss),
                      torch.from_numpy(attention).unsqueeze(1),
                      *_scene_and_binding(examples, rows, length), torch.from_numpy(weights),
                      torch.from_numpy(positions))


def _noise(ids: np.ndarray, free: np.ndarray, t, rng: np.random.Generator, mask_id: int,
           corrupt_rate: float, code_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mask each free position with probability t (a scalar or one per position), swap a few
    unmasked free ones for random tokens of code_range (self-correction); returns the noisy ids
    and where the loss goes (masked or swapped)."""
    masked = free & (rng.random(len(ids)) < t)
    if not masked.any():  # every example teaches something
        masked[rng.choice(np.flatnonzero(free))] = True
    corrupt = free & ~masked & (rng.random(len(ids)) < corrupt_rate * t)
    row = ids.copy()
    row[masked] = mask_id
    row[corrupt] = rng.integers(code_range[0], code_range[1], size=int(corrupt.sum()))
    return row, masked | corrupt


def _hard_cells(canvas: np.ndarray) -> np.ndarray:
    """First row, and cells unlike the cell above or to the left (row-major GRID_SIDE grid)."""
    k = np.arange(len(canvas))
    above = np.where(k >= GRID_SIDE, canvas[np.maximum(k - GRID_SIDE, 0)], -1)
    left = np.where(k % GRID_SIDE > 0, canvas[np.maximum(k - 1, 0)], canvas)
    return (k < GRID_SIDE) | (canvas != above) | (canvas != left)


def _mask_ratios(rng: np.random.Generator, n: int, schedule: str) -> np.ndarray:
    if schedule == "cosine":  # MaskGIT: more weight on heavily masked canvases
        return np.maximum(0.02, np.cos(np.pi / 2 * rng.uniform(0.0, 1.0, size=n)))
    return rng.uniform(0.02, 1.0, size=n)
