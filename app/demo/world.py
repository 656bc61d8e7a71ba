"""ShapesWorld: 64x64 flat-colour scenes of one or two shapes, with every text task they support.

The world is fixed exactly (palette, grid, sizes, sentence templates) because checks outside this
module rely on it: captions, questions and edit instructions are produced and parsed here, and
`parse_image` reads a scene back from pixels so that generated images can be scored.

Geometry: a 3x3 grid with cell centres at 13, 33 and 53 px. An object of size s (10 or 18 px)
occupies the s x s box [c - s/2, c + s/2) around its cell centre. The centres are chosen so that
every box starts on a 4-px patch boundary: each silhouette then cuts patches the same way wherever
it is, and the whole world has only 1296 distinct 4x4 patches (4264 with symmetric centres at
11/32/53), which a patch codebook can cover. Large objects stay inside the image (margins 4 and
2 px) and objects in neighbouring cells stay 2 px apart, so no 4x4 patch ever holds two objects.
Each cell owns a 4-px-aligned region (CELL_SPANS, a partition of the image) that contains any
object in it; inpainting masks and `parse_image` both use these regions.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field

import numpy as np

IMAGE_SIZE = 64
PATCH_SIZE = 4

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (50, 170, 70),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
PALETTE_ARRAY = np.array([PALETTE[c] for c in COLORS], dtype=np.uint8)  # [8, 3], COLORS order

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
SIZE_PX: dict[str, int] = {"small": 10, "large": 18}
# Reading order; a position's index is its cell index and the canonical order of objects.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
CELL_CENTERS: tuple[int, int, int] = (13, 33, 53)


def _cell_spans() -> tuple[tuple[int, int], ...]:
    """Pixel span per grid row/column: cut after each large box, rounded up to a patch boundary,
    so the spans partition 0..64 and each one contains its cell's large box."""
    half = SIZE_PX["large"] // 2
    cuts = [-(-(c + half) // PATCH_SIZE) * PATCH_SIZE for c in CELL_CENTERS[:-1]]
    bounds = [0, *cuts, IMAGE_SIZE]
    return tuple(zip(bounds[:-1], bounds[1:], strict=True))


CELL_SPANS = _cell_spans()  # ((0, 24), (24, 44), (44, 64))

QA_KINDS: tuple[str, ...] = (
    "color_of_shape", "shape_at_position", "count", "position_of", "background_color",
    "is_there", "describe",
)
EDIT_KINDS: tuple[str, ...] = ("recolor", "move", "remove", "add", "background")


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    position: str

    def phrase(self) -> str:
        """The caption's wording for one object: 'a small red circle at the top left'."""
        return f"a {self.size} {self.color} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]

    def __post_init__(self) -> None:
        # Objects are kept in grid reading order so that equal scenes compare equal and captions
        # are canonical, however the scene was built.
        ordered = tuple(sorted(self.objects, key=lambda o: _position_index(o.position)))
        object.__setattr__(self, "objects", ordered)

    def object_at(self, position: str) -> Obj | None:
        return next((o for o in self.objects if o.position == position), None)

    def free_positions(self) -> list[str]:
        taken = {o.position for o in self.objects}
        return [p for p in POSITIONS if p not in taken]


def _position_index(position: str) -> int:
    return POSITIONS.index(position) if position in POSITIONS else len(POSITIONS)


def is_valid_scene(scene: Scene) -> bool:
    """All world rules: 1-2 objects, known attributes, distinct cells, colours != background."""
    if scene.background not in PALETTE or not 1 <= len(scene.objects) <= 2:
        return False
    for o in scene.objects:
        if (o.shape not in SHAPES or o.color not in PALETTE or o.size not in SIZES
                or o.position not in POSITIONS or o.color == scene.background):
            return False
    return len({o.position for o in scene.objects}) == len(scene.objects)


def _random_object(rng: np.random.Generator, background: str, position: str) -> Obj:
    colors = [c for c in COLORS if c != background]
    return Obj(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=colors[rng.integers(len(colors))],
        size=SIZES[rng.integers(len(SIZES))],
        position=position,
    )


def sample_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """A uniformly random valid scene; the same generator state always gives the same scene."""
    if n_objects is None:
        n_objects = int(rng.integers(1, 3))
    if n_objects not in (1, 2):
        raise ValueError(f"a scene has 1 or 2 objects, not {n_objects}")
    background = COLORS[rng.integers(len(COLORS))]
    cells = rng.choice(len(POSITIONS), size=n_objects, replace=False)
    return Scene(background, tuple(_random_object(rng, background, POSITIONS[c]) for c in cells))


def caption(scene: Scene) -> str:
    objects = " and ".join(o.phrase() for o in scene.objects)
    return f"{objects} on a {scene.background} background"


def sample_prompt(scene: Scene, rng: np.random.Generator) -> str:
    """A text-to-image prompt the scene satisfies: the caption with size, position and the
    background each left out with probability 1/2 (colour and shape are always stated)."""
    keep_size, keep_pos, keep_bg = (rng.random(3) < 0.5).tolist()
    parts = []
    for o in scene.objects:
        words = ["a"] + ([o.size] if keep_size else []) + [o.color, o.shape]
        if keep_pos:
            words += ["at", "the", o.position]
        parts.append(" ".join(words))
    text = " and ".join(parts)
    return f"{text} on a {scene.background} background" if keep_bg else text


# ----------------------------------------------------------------------------- rendering


@functools.cache
def shape_mask(shape: str, size_px: int) -> np.ndarray:
    """Boolean [s, s] silhouette. Integer tests on pixel coordinates, so there is no aliasing and
    no float tie can flip a pixel between platforms."""
    s = size_px
    y, x = np.mgrid[0:s, 0:s]
    if shape == "square":
        mask = np.ones((s, s), dtype=bool)
    elif shape == "circle":  # pixel centre inside the inscribed circle
        mask = (2 * x + 1 - s) ** 2 + (2 * y + 1 - s) ** 2 <= s * s
    elif shape == "triangle":  # apex at top centre, base along the bottom row; rows widen by 2
        mask = np.abs(4 * x + 2 - 2 * s) <= 2 * (y + 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)  # cached and shared
    return mask


def object_box(obj: Obj) -> tuple[int, int, int]:
    """(top, left, size) of the object's s x s box."""
    s = SIZE_PX[obj.size]
    row, col = divmod(POSITIONS.index(obj.position), 3)
    return CELL_CENTERS[row] - s // 2, CELL_CENTERS[col] - s // 2, s


def render(scene: Scene) -> np.ndarray:
    """The scene as a (64, 64, 3) uint8 image."""
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    img[:] = PALETTE[scene.background]
    for o in scene.objects:
        top, left, s = object_box(o)
        img[top:top + s, left:left + s][shape_mask(o.shape, s)] = PALETTE[o.color]
    return img


# ----------------------------------------------------------------------------- reading pixels

_MIN_OBJECT_PIXELS = 24  # a small triangle has 60 px; scattered noise in an empty cell has far fewer
_MIN_IOU = 0.6  # below this best template overlap the blob is not a world object


def snap_to_palette(img: np.ndarray) -> np.ndarray:
    """Index into COLORS of the nearest palette colour for every pixel: int [H, W]."""
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; |p|^2 is the same for every c, so it is dropped.
    pixels = img.reshape(-1, 3).astype(np.float32)
    centres = PALETTE_ARRAY.astype(np.float32)
    dist = (centres * centres).sum(1) - 2.0 * pixels @ centres.T
    return np.argmin(dist, axis=1).reshape(img.shape[:2])


@functools.cache
def _templates() -> tuple[tuple[str, str, np.ndarray, int, float, float], ...]:
    """(shape, size, silhouette, area, centroid row, centroid col) for the six silhouettes."""
    out = []
    for shape in SHAPES:
        for size in SIZES:
            mask = shape_mask(shape, SIZE_PX[size])
            ys, xs = np.nonzero(mask)
            out.append((shape, size, mask, len(ys), float(ys.mean()), float(xs.mean())))
    return tuple(out)


def _best_template(mask: np.ndarray) -> tuple[str, str, float]:
    """(shape, size, IoU) of the silhouette that best overlaps `mask`.

    Each silhouette is placed so its centroid sits on the blob's centroid, give or take a pixel.
    Whole-silhouette overlap tolerates flipped edge pixels far better than box or fill-ratio
    features would, since a few stray pixels barely move the centroid or the overlap."""
    pad = SIZE_PX["large"] + 2
    padded = np.pad(mask, pad)
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    area = int(mask.sum())
    best = ("", "", -1.0)
    for shape, size, tmpl, tmpl_area, ty, tx in _templates():
        s = tmpl.shape[0]
        top, left = int(round(cy - ty)) + pad, int(round(cx - tx)) + pad
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            window = padded[top + dy:top + dy + s, left + dx:left + dx + s]
            inter = int(np.count_nonzero(window & tmpl))
            iou = inter / (area + tmpl_area - inter)
            if iou > best[2]:
                best = (shape, size, iou)
    return best


class _Unreadable(Exception):
    """A cell holds something that is not a world object."""


def _read_object(labels: np.ndarray, background: int, position: str) -> Obj | None:
    """The object in one cell region, or None if the cell is empty (raises _Unreadable)."""
    foreground = labels != background
    n_foreground = int(foreground.sum())
    if n_foreground < _MIN_OBJECT_PIXELS:
        return None
    counts = np.bincount(labels[foreground], minlength=len(COLORS))
    color = int(np.argmax(counts))
    if counts[color] < 0.6 * n_foreground:  # objects are one flat colour
        raise _Unreadable
    shape, size, iou = _best_template(labels == color)
    if iou < _MIN_IOU:
        raise _Unreadable
    return Obj(shape=shape, color=COLORS[color], size=size, position=position)


def parse_image(img: np.ndarray) -> Scene | None:
    """Read the scene back from a (64, 64, 3) image, or None if it is not a valid world image.

    Pixels snap to the nearest palette colour; the commonest colour is the background; each grid
    cell's region (CELL_SPANS) is then read on its own: its majority non-background colour is the
    object's colour, and shape and size come from the best-overlapping of the six silhouettes."""
    if img.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"expected a (64, 64, 3) image, got {img.shape}")
    labels = snap_to_palette(img)
    background = int(np.argmax(np.bincount(labels.ravel(), minlength=len(COLORS))))
    objects = []
    for index, position in enumerate(POSITIONS):
        (y0, y1), (x0, x1) = CELL_SPANS[index // 3], CELL_SPANS[index % 3]
        try:
            found = _read_object(labels[y0:y1, x0:x1], background, position)
        except _Unreadable:
            return None
        if found is not None:
            objects.append(found)
    scene = Scene(COLORS[background], tuple(objects))
    return scene if is_valid_scene(scene) else None


# ----------------------------------------------------------------------------- prompts

_ALIASES = {"colour": "color", "centre": "center", "middle": "center", "big": "large"}
_FILLER = {"a", "an", "the", "at", "on", "in"}
_TWO_WORD_POSITIONS = {tuple(p.split()): p for p in POSITIONS if " " in p}


def normalize_text(text: str) -> list[str]:
    """Lowercase words with punctuation dropped and a few spelling aliases applied."""
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return [_ALIASES.get(w, w) for w in words]


@dataclass
class ObjConstraint:
    shape: str | None = None
    color: str | None = None
    size: str | None = None
    position: str | None = None

    def matches(self, obj: Obj) -> bool:
        return all(
            want is None or want == have
            for want, have in ((self.shape, obj.shape), (self.color, obj.color),
                               (self.size, obj.size), (self.position, obj.position))
        )

    def is_empty(self) -> bool:
        return self.shape is None and self.color is None and self.size is None \
            and self.position is None


@dataclass
class Constraints:
    objects: list[ObjConstraint] = field(default_factory=list)
    background: str | None = None
    unknown_words: list[str] = field(default_factory=list)


# Attribute order inside one object phrase; an attribute that does not come later than the last
# one seen starts a new object ("a red circle a blue square" is two objects).
_RANK = {"size": 0, "color": 1, "shape": 2, "position": 3}


def parse_prompt(text: str) -> Constraints:
    """Constraints stated by a prompt such as "a large red circle at the top on a blue background".

    Tolerant: case, spacing, punctuation and "an" are ignored; words it does not know go to
    `unknown_words` instead of raising."""
    words = normalize_text(text)
    out = Constraints()
    current, last_rank = ObjConstraint(), -1

    def flush() -> None:
        nonlocal current, last_rank
        if not current.is_empty():
            out.objects.append(current)
        current, last_rank = ObjConstraint(), -1

    def put(attr: str, value: str) -> None:
        nonlocal last_rank
        if _RANK[attr] <= last_rank:
            flush()
        setattr(current, attr, value)
        last_rank = _RANK[attr]

    i = 0
    while i < len(words):
        w = words[i]
        pair = tuple(words[i:i + 2])
        if pair in _TWO_WORD_POSITIONS:
            put("position", _TWO_WORD_POSITIONS[pair])
            i += 2
            continue
        if w in PALETTE and i + 1 < len(words) and words[i + 1] == "background":
            out.background = w
            i += 2
            continue
        if w == "and":
            flush()
        elif w in SIZES:
            put("size", w)
        elif w in PALETTE:
            put("color", w)
        elif w in SHAPES:
            put("shape", w)
        elif w in POSITIONS:
            put("position", w)
        elif w not in _FILLER:
            out.unknown_words.append(w)
        i += 1
    flush()
    return out


def satisfies(scene: Scene, constraints: Constraints) -> bool:
    """Every stated attribute holds, with objects matched to constraints as an assignment, and
    the scene has exactly as many objects as the prompt states. Unknown words are ignored."""
    if constraints.background is not None and constraints.background != scene.background:
        return False
    wanted = constraints.objects
    if len(wanted) != len(scene.objects):
        return False
    return any(
        all(c.matches(o) for c, o in zip(wanted, perm, strict=True))
        for perm in itertools.permutations(scene.objects)
    )


# ----------------------------------------------------------------------------- questions

_SHAPE = "(" + "|".join(SHAPES) + ")"
_COLOR = "(" + "|".join(COLORS) + ")"
_POS = "(" + "|".join(sorted(POSITIONS, key=len, reverse=True)) + ")"
_NUMBER_WORDS = {1: "one", 2: "two"}


def _unique(scene: Scene, **attrs: str) -> Obj | None:
    found = [o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items())]
    return found[0] if len(found) == 1 else None


# Questions about one object: (pattern, what is asked of it, the attributes that pick it out).
# "present" asks whether any object has them ("is there"). Positions are unique in a scene, so
# _unique finds the object at a position as Scene.object_at does.
_OBJECT_QUESTIONS = (
    (f"what color is the {_SHAPE}", "color", ("shape",)),
    (f"what shape is at the {_POS}", "shape", ("position",)),
    (f"where is the {_COLOR} {_SHAPE}", "position", ("color", "shape")),
    (f"is there an? {_COLOR} {_SHAPE}", "present", ("color", "shape")),
)


def _object_question(q: str) -> tuple[str, dict[str, str]] | None:
    """(what is asked, {attribute: value} picking the object) of a normalized question about one
    object; None for any other question."""
    for pattern, asked, keys in _OBJECT_QUESTIONS:
        if m := re.fullmatch(pattern, q):
            return asked, dict(zip(keys, m.groups(), strict=True))
    return None


def answer_question(scene: Scene, question: str) -> str | None:
    """The answer (lowercase, no punctuation), or None if the question is not one of the world's
    kinds, refers to something absent, or is ambiguous for this scene."""
    q = " ".join(normalize_text(question))
    if q == "what color is the background":
        return scene.background
    if q == "how many shapes are there":
        return _NUMBER_WORDS.get(len(scene.objects))
    if q == "describe the image":
        return caption(scene)
    if (parsed := _object_question(q)) is None:
        return None
    asked, attrs = parsed
    if asked == "present":
        present = any(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)
        return "yes" if present else "no"
    obj = _unique(scene, **attrs)
    return getattr(obj, asked) if obj else None


def question_object(scene: Scene, question: str) -> Obj | None:
    """The object a question asks about: the one whose attribute answers it, or the one an "is
    there" question finds; None for questions about the whole picture, an absent object or an
    ambiguous one."""
    parsed = _object_question(" ".join(normalize_text(question)))
    return None if parsed is None else _unique(scene, **parsed[1])


def _ask(body: str) -> str:
    # Questions are shown the way a person types them; "describe the image" is a request.
    text = body[0].upper() + body[1:]
    return text if body == "describe the image" else text + "?"


def _qa_candidates(scene: Scene, kind: str, rng: np.random.Generator) -> list[str]:
    """Unambiguous questions of one kind for this scene (possibly none)."""
    objs = scene.objects
    if kind == "color_of_shape":
        return [f"what color is the {o.shape}" for o in objs if _unique(scene, shape=o.shape)]
    if kind == "shape_at_position":
        return [f"what shape is at the {o.position}" for o in objs]
    if kind == "count":
        return ["how many shapes are there"]
    if kind == "position_of":
        return [f"where is the {o.color} {o.shape}" for o in objs
                if _unique(scene, color=o.color, shape=o.shape)]
    if kind == "background_color":
        return ["what color is the background"]
    if kind == "is_there":
        if rng.random() < 0.5:  # balance yes and no answers
            return [f"is there a {o.color} {o.shape}" for o in objs]
        present = {(o.color, o.shape) for o in objs}
        return [f"is there a {c} {s}" for c in COLORS for s in SHAPES
                if c != scene.background and (c, s) not in present]
    if kind == "describe":
        return ["describe the image"]
    raise ValueError(f"unknown question kind {kind!r}; choose from {', '.join(QA_KINDS)}")


def sample_is_there(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """An "is there" question, half of them about an object the scene has ("yes"), half about a
    near miss ("no"): an object colour and shape it lacks that share the colour or the shape of
    one it has, so the answer turns on both words (sample_qa's "no" questions mostly share
    neither). Training data only: `unmask eval` asks sample_qa's questions."""
    objs = scene.objects
    present = {(o.color, o.shape) for o in objs}
    misses = sorted({(c, s) for o in objs for c in COLORS for s in SHAPES
                     if (c == o.color) != (s == o.shape) and c != scene.background
                     and (c, s) not in present})
    if rng.random() < 0.5 or not misses:
        color, shape = sorted(present)[rng.integers(len(present))]
    else:
        color, shape = misses[rng.integers(len(misses))]
    question = _ask(f"is there a {color} {shape}")
    return question, answer_question(scene, question)


def sample_qa(
    scene: Scene, rng: np.random.Generator, kind: str | None = None
) -> tuple[str, str]:
    """A random (question, answer) pair; `kind` (one of QA_KINDS) forces the kind, else a kind
    with at least one unambiguous question is drawn uniformly."""
    if kind is None:
        kinds = [k for k in QA_KINDS if k not in ("color_of_shape", "position_of")
                 or _qa_candidates(scene, k, rng)]
        kind = kinds[rng.integers(len(kinds))]
    candidates = _qa_candidates(scene, kind, rng)
    if not candidates:
        raise ValueError(f"no unambiguous {kind!r} question for this scene")
    question = _ask(candidates[rng.integers(len(candidates))])
    answer = answer_question(scene, question)
    assert answer is not None, question  # candidates are unambiguous by construction
    return question, answer


def questions_by_kind(rng: np.random.Generator, rounds: int):
    """(round, kind, scene, question, answer) for `rounds` rounds of every kind of QA_KINDS, each
    on a fresh scene (a kind the scene has no unambiguous question of is skipped): the held-out
    question sets of the diagnostic scripts."""
    for i in range(rounds):
        for kind in QA_KINDS:
            scene = sample_scene(rng)
            try:
                question, answer = sample_qa(scene, rng, kind)
            except ValueError:  # no unambiguous question of this kind for the scene
                continue
            yield i, kind, scene, question, answer


# ----------------------------------------------------------------------------- edits


def apply_edit(scene: Scene, instruction: str) -> Scene | None:
    """The scene after an instruction, or None if the instruction is unknown, ambiguous (the shape
    occurs twice or not at all) or would break a world rule. A no-op edit returns the scene."""
    q = " ".join(normalize_text(instruction))
    new: Scene | None = None
    if m := re.fullmatch(f"make the {_SHAPE} {_COLOR}", q):
        if obj := _unique(scene, shape=m[1]):
            new = _replace(scene, obj, Obj(obj.shape, m[2], obj.size, obj.position))
    elif m := re.fullmatch(f"move the {_SHAPE} to the {_POS}", q):
        if obj := _unique(scene, shape=m[1]):
            new = _replace(scene, obj, Obj(obj.shape, obj.color, obj.size, m[2]))
    elif m := re.fullmatch(f"remove the {_SHAPE}", q):
        if obj := _unique(scene, shape=m[1]):
            new = Scene(scene.background, tuple(o for o in scene.objects if o is not obj))
    elif m := re.fullmatch(f"add an? (small|large) {_COLOR} {_SHAPE} at the {_POS}", q):
        new = Scene(scene.background, scene.objects + (Obj(m[3], m[2], m[1], m[4]),))
    elif m := re.fullmatch(f"change the background to {_COLOR}", q):
        new = Scene(m[1], scene.objects)
    return new if new is not None and is_valid_scene(new) else None


def _replace(scene: Scene, old: Obj, new: Obj) -> Scene:
    return Scene(scene.background, tuple(new if o is old else o for o in scene.objects))


def _edit_candidates(scene: Scene, kind: str) -> list[str]:
    """Every instruction of one kind that really changes this scene and keeps it valid."""
    unique = [o for o in scene.objects if _unique(scene, shape=o.shape)]
    free = scene.free_positions()
    if kind == "recolor":
        return [f"make the {o.shape} {c}" for o in unique for c in COLORS
                if c not in (o.color, scene.background)]
    if kind == "move":
        return [f"move the {o.shape} to the {p}" for o in unique for p in free]
    if kind == "remove":
        return [f"remove the {o.shape}" for o in unique] if len(scene.objects) == 2 else []
    if kind == "add":
        if len(scene.objects) != 1:
            return []
        return [f"add a {z} {c} {s} at the {p}" for z in SIZES for c in COLORS for s in SHAPES
                for p in free if c != scene.background]
    if kind == "background":
        used = {o.color for o in scene.objects} | {scene.background}
        return [f"change the background to {c}" for c in COLORS if c not in used]
    raise ValueError(f"unknown edit kind {kind!r}; choose from {', '.join(EDIT_KINDS)}")


def sample_edit(
    scene: Scene, rng: np.random.Generator, kind: str | None = None
) -> tuple[str, Scene]:
    """A random (instruction, edited scene); `kind` (one of EDIT_KINDS) forces the kind, else a
    feasible kind is drawn uniformly. The edited scene is always valid and differs from `scene`."""
    if kind is None:
        kinds = [k for k in EDIT_KINDS if _edit_candidates(scene, k)]
        kind = kinds[rng.integers(len(kinds))]
    candidates = _edit_candidates(scene, kind)
    if not candidates:
        raise ValueError(f"no valid {kind!r} edit for this scene")
    instruction = candidates[rng.integers(len(candidates))]
    new = apply_edit(scene, instruction)
    assert new is not None and new != scene, instruction  # candidates are valid by construction
    return instruction, new


# ----------------------------------------------------------------------------- inpainting


@dataclass(frozen=True, eq=False)  # eq on numpy fields would be ambiguous
class InpaintExample:
    source_scene: Scene
    target_scene: Scene
    prompt: str  # "a small yellow triangle"
    position: str  # the masked cell
    cell_mask: np.ndarray  # bool [16, 16], one entry per 4x4 patch
    pixel_mask: np.ndarray  # bool [64, 64], cell_mask upsampled


def inpaint_masks(position: str) -> tuple[np.ndarray, np.ndarray]:
    """(cell_mask [16, 16], pixel_mask [64, 64]) for the patch-aligned region of one grid cell.
    The region contains any object in that cell and no pixel of any other cell's object."""
    row, col = divmod(POSITIONS.index(position), 3)
    (y0, y1), (x0, x1) = CELL_SPANS[row], CELL_SPANS[col]
    pixel = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    pixel[y0:y1, x0:x1] = True
    cell = pixel[::PATCH_SIZE, ::PATCH_SIZE].copy()
    return cell, pixel


def sample_inpaint(scene: Scene, rng: np.random.Generator) -> InpaintExample:
    """Mask a free cell of a one-object scene and ask for a new object there. Scenes with two
    objects are refused (the result would have three), as inpainting only ever adds."""
    if len(scene.objects) != 1:
        raise ValueError("inpainting adds an object, so the source scene must have exactly one")
    free = scene.free_positions()
    new = _random_object(rng, scene.background, free[rng.integers(len(free))])
    cell, pixel = inpaint_masks(new.position)
    return InpaintExample(
        source_scene=scene,
        target_scene=Scene(scene.background, scene.objects + (new,)),
        prompt=f"a {new.size} {new.color} {new.shape}",
        position=new.position,
        cell_mask=cell,
        pixel_mask=pixel,
    )


def composite(original: np.ndarray, generated: np.ndarray, pixel_mask: np.ndarray) -> np.ndarray:
    """Generated pixels inside the mask, original pixels elsewhere."""
    if original.shape != generated.shape or original.shape[:2] != pixel_mask.shape:
        raise ValueError(
            f"shape mismatch: original {original.shape}, generated {generated.shape}, "
            f"mask {pixel_mask.shape}"
        )
    return np.where(pixel_mask[..., None], generated, original)


# ----------------------------------------------------------------------------- vocabulary


def vocabulary() -> list[str]:
    """Every word any world text (caption, prompt, question, answer, instruction) can contain,
    lowercased; "?" is the only punctuation. Handy to check a word-level tokenizer's coverage."""
    templates = (
        "a an at the on and background what color is shape how many shapes are there one two "
        "where describe image yes no make move to remove add change ?"
    )
    words = set(templates.split()) | set(COLORS) | set(SHAPES) | set(SIZES)
    words |= {w for p in POSITIONS for w in p.split()}
    return sorted(words)


def phrase_names() -> tuple[str, ...]:
    """The world's two-word names: the two-word positions ("top left") and "{color} background".
    The demo tokenizer makes each one token: "blue" alone is then always an object's colour and
    a position always one token, so the model need not learn from word pairs which is which."""
    return tuple(p for p in POSITIONS if " " in p) + tuple(f"{c} background" for c in COLORS)


def every_object() -> tuple[Obj, ...]:
    """Every object the world can hold, in a fixed order (size, colour, shape, position)."""
    return tuple(Obj(shape, color, size, position) for size in SIZES for color in COLORS
                 for shape in SHAPES for position in POSITIONS)


def object_phrase_names() -> tuple[str, ...]:
    """Every full object phrase of a caption, "a small red circle at the top left", in
    every_object's order. A tokenizer given these as phrases reads each one as
    a single token: the token that says what an object is also says where it is, so a canvas
    cell finds its object's colour by matching its own place in one attention hop (issue 3,
    session 13: with the caption's separate words, the colour word first had to learn its place
    from the words after it, and the cell to look for it, and neither half pays off alone)."""
    return tuple(obj.phrase() for obj in every_object())


def text_rewrites() -> tuple[tuple[str, str], ...]:
    """Lowercased text rewrites the demo tokenizer applies before splitting words, so a colour that
    names a background is read as the "{color} background" token wherever it stands: "change the
    background to orange" -> "... background to orange background". Without it the instruction's
    colour is the object-colour token, and edits drew the new background in an object's colour.
    Applied in order; the second pair of each colour undoes the first where the user already
    wrote "... to orange background"."""
    return tuple(
        pair for c in COLORS for pair in (
            (f"background to {c}", f"background to {c} background"),
            (f"background to {c} background background", f"background to {c} background"),
        )
    )
