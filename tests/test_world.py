import numpy as np
import pytest

from app.demo import world
from app.demo.world import (
    COLORS,
    EDIT_KINDS,
    PALETTE,
    POSITIONS,
    QA_KINDS,
    SHAPES,
    Obj,
    Scene,
    answer_question,
    apply_edit,
    caption,
    composite,
    inpaint_masks,
    is_valid_scene,
    normalize_text,
    parse_image,
    parse_prompt,
    render,
    sample_edit,
    sample_inpaint,
    sample_prompt,
    sample_qa,
    sample_scene,
    satisfies,
    vocabulary,
)


def scenes(n: int, seed: int = 0, n_objects: int | None = None) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, n_objects) for _ in range(n)]


def edge_noise(img: np.ndarray, rng: np.random.Generator, frac: float, sigma: float) -> np.ndarray:
    """Copy a neighbour's colour into a fraction of the pixels on colour edges, then add RGB noise."""
    out = img.astype(np.int32)
    for shift in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        neighbour = np.roll(img, shift, axis=(0, 1)).astype(np.int32)
        flip = (neighbour != img).any(-1) & (rng.random(img.shape[:2]) < frac)
        out[flip] = neighbour[flip]
    out += np.rint(rng.normal(0, sigma, out.shape)).astype(np.int32)
    return np.clip(out, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- scenes, rendering


def test_sampling_is_deterministic_and_valid():
    a, b = scenes(50, seed=7), scenes(50, seed=7)
    assert a == b
    assert a != scenes(50, seed=8)
    assert all(is_valid_scene(s) for s in a)
    assert {len(s.objects) for s in a} == {1, 2}
    assert all(len(s.objects) == 2 for s in scenes(20, n_objects=2))
    with pytest.raises(ValueError):
        sample_scene(np.random.default_rng(0), n_objects=3)


def test_scene_objects_are_canonically_ordered():
    circle = Obj("circle", "red", "small", "bottom right")
    square = Obj("square", "blue", "large", "top")
    assert Scene("white", (circle, square)) == Scene("white", (square, circle))
    assert caption(Scene("white", (circle, square))) == (
        "a large blue square at the top and a small red circle at the bottom right "
        "on a white background"
    )


def test_render_geometry():
    scene = Scene("black", (Obj("triangle", "yellow", "large", "top left"),
                            Obj("square", "red", "small", "bottom right")))
    img = render(scene)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    yellow = (img == PALETTE["yellow"]).all(-1)
    ys, xs = np.nonzero(yellow)
    # large object centred on (13, 13): box [4, 22); apex row narrow at top, base full at bottom
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 21, 4, 21)
    assert yellow[4].sum() == 2 and yellow[21].sum() == 18
    red = (img == PALETTE["red"]).all(-1)
    ys, xs = np.nonzero(red)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (48, 57, 48, 57) and red.sum() == 100
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours == {PALETTE["black"], PALETTE["yellow"], PALETTE["red"]}


def test_large_shapes_fit_inside_the_image():
    for pos in ("top left", "bottom right"):
        img = render(Scene("white", (Obj("circle", "blue", "large", pos),)))
        blue = (img == PALETTE["blue"]).all(-1)
        assert blue.sum() == world.shape_mask("circle", 18).sum()


def test_boxes_align_with_patches_and_patches_hold_one_object():
    for shape in SHAPES:
        for size in ("small", "large"):
            for pos in POSITIONS:
                top, left, _ = world.object_box(Obj(shape, "red", size, pos))
                assert top % 4 == 0 and left % 4 == 0
    for scene in scenes(100, seed=13, n_objects=2):
        a, b = (render(Scene(scene.background, (o,))) != PALETTE[scene.background] for o in
                scene.objects)
        patch_a = a.any(-1).reshape(16, 4, 16, 4).any(axis=(1, 3))
        patch_b = b.any(-1).reshape(16, 4, 16, 4).any(axis=(1, 3))
        assert not (patch_a & patch_b).any()


# ----------------------------------------------------------------------------- parse_image


def test_parse_image_round_trip_on_clean_renders():
    for scene in scenes(600, seed=1):
        assert parse_image(render(scene)) == scene


def test_parse_image_every_shape_size_position():
    for shape in SHAPES:
        for size in ("small", "large"):
            for pos in POSITIONS:
                scene = Scene("green", (Obj(shape, "purple", size, pos),))
                assert parse_image(render(scene)) == scene


def test_parse_image_tolerates_edge_flips_and_colour_noise():
    rng = np.random.default_rng(3)
    for scene in scenes(200, seed=2):
        assert parse_image(edge_noise(render(scene), rng, frac=0.05, sigma=8)) == scene


def test_parse_image_rejects_non_world_images():
    blank = np.full((64, 64, 3), PALETTE["white"], dtype=np.uint8)
    assert parse_image(blank) is None  # no object
    rng = np.random.default_rng(0)
    assert parse_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) is None
    blob = blank.copy()
    blob[22:44, 22:30] = PALETTE["red"]  # a thin bar is not a world shape
    assert parse_image(blob) is None
    with pytest.raises(ValueError):
        parse_image(blank[:32])


# ----------------------------------------------------------------------------- prompts


def test_caption_parses_and_is_satisfied():
    all_scenes = scenes(300, seed=4)
    for scene in all_scenes:
        cons = parse_prompt(caption(scene))
        assert cons.unknown_words == []
        assert cons.background == scene.background
        assert len(cons.objects) == len(scene.objects)
        assert satisfies(scene, cons)
    # a caption describes its own scene only (up to scenes that are equal)
    other = all_scenes[1:] + all_scenes[:1]
    for scene, different in zip(all_scenes, other, strict=True):
        assert satisfies(different, parse_prompt(caption(scene))) == (scene == different)


def test_sampled_prompts_are_satisfied():
    rng = np.random.default_rng(5)
    for scene in scenes(200, seed=5):
        prompt = sample_prompt(scene, rng)
        assert satisfies(scene, parse_prompt(prompt)), prompt


def test_parse_prompt_is_tolerant():
    cons = parse_prompt("  A Large RED circle at the Top Left, and an ORANGE square, on a blue "
                        "background!!  please ")
    assert [(c.size, c.color, c.shape, c.position) for c in cons.objects] == [
        ("large", "red", "circle", "top left"), (None, "orange", "square", None)]
    assert cons.background == "blue"
    assert cons.unknown_words == ["please"]
    # no "and": a repeated attribute starts a new object
    assert len(parse_prompt("a red circle a blue square").objects) == 2


def test_satisfies_omitted_attributes_and_count():
    scene = Scene("white", (Obj("circle", "red", "small", "top"),
                            Obj("square", "blue", "large", "center")))
    assert satisfies(scene, parse_prompt("a blue square and a red circle"))
    assert satisfies(scene, parse_prompt("a red circle at the top and a large blue square"))
    assert not satisfies(scene, parse_prompt("a red circle"))  # count differs
    assert not satisfies(scene, parse_prompt("a red circle and a blue square on a red background"))
    assert not satisfies(scene, parse_prompt("a large red circle and a blue square"))
    assert not satisfies(scene, parse_prompt("a red square and a blue circle"))
    same = Scene("white", (Obj("circle", "red", "small", "top"),
                           Obj("circle", "red", "large", "center")))
    assert satisfies(same, parse_prompt("a large red circle and a small red circle"))


# ----------------------------------------------------------------------------- questions


def expected_answer(scene: Scene, question: str) -> str:
    """Ground truth computed independently of world.answer_question."""
    words = normalize_text(question)
    text = " ".join(words)
    if text == "describe the image":
        return caption(scene)
    if text == "what color is the background":
        return scene.background
    if text == "how many shapes are there":
        return ["one", "two"][len(scene.objects) - 1]
    if text.startswith("what color is the"):
        (obj,) = [o for o in scene.objects if o.shape == words[-1]]
        return obj.color
    if text.startswith("what shape is at the"):
        return scene.object_at(" ".join(words[5:])).shape
    if text.startswith("where is the"):
        (obj,) = [o for o in scene.objects if (o.color, o.shape) == (words[3], words[4])]
        return obj.position
    if text.startswith("is there a"):
        found = any((o.color, o.shape) == (words[3], words[4]) for o in scene.objects)
        return "yes" if found else "no"
    raise AssertionError(question)


def test_every_qa_kind_is_answered_correctly():
    rng = np.random.default_rng(6)
    seen_yes_no = set()
    for scene in scenes(150, seed=6):
        for kind in QA_KINDS:
            try:
                question, answer = sample_qa(scene, rng, kind)
            except ValueError:
                assert kind in ("color_of_shape", "position_of")  # only these can be ambiguous
                continue
            assert answer == expected_answer(scene, question), question
            assert answer == answer.lower() and "?" not in answer and "." not in answer
            if kind == "is_there":
                seen_yes_no.add(answer)
    assert seen_yes_no == {"yes", "no"}


def test_sample_qa_covers_all_kinds():
    rng = np.random.default_rng(7)
    questions = [sample_qa(scene, rng)[0] for scene in scenes(300, seed=7)]
    starts = {" ".join(normalize_text(q)[:3]) for q in questions}
    assert starts == {"what color is", "what shape is", "how many shapes", "where is the",
                      "is there a", "describe the image"}
    assert any(q.endswith("background?") for q in questions)


def test_answer_question_tolerance_and_ambiguity():
    scene = Scene("blue", (Obj("circle", "red", "small", "top"),
                           Obj("circle", "red", "large", "bottom right")))
    assert answer_question(scene, "  WHAT colour is the   background ? ") == "blue"
    assert answer_question(scene, "What shape is at the bottom right?") == "circle"
    assert answer_question(scene, "what color is the circle") is None  # two circles
    assert answer_question(scene, "where is the red circle") is None  # two red circles
    assert answer_question(scene, "what shape is at the center") is None  # empty cell
    assert answer_question(scene, "what color is the square") is None  # absent
    assert answer_question(scene, "Is there a red circle?") == "yes"
    assert answer_question(scene, "is there an orange square") == "no"
    assert answer_question(scene, "how many shapes are there") == "two"
    assert answer_question(scene, "what is the meaning of life") is None
    with pytest.raises(ValueError):
        sample_qa(scene, np.random.default_rng(0), "color_of_shape")


# ----------------------------------------------------------------------------- edits


def check_edit(scene: Scene, instruction: str, new: Scene) -> None:
    words = normalize_text(instruction)
    assert is_valid_scene(new) and new != scene
    if words[0] == "make":
        (old,) = [o for o in scene.objects if o.shape == words[2]]
        assert new.object_at(old.position) == Obj(old.shape, words[3], old.size, old.position)
        assert len(new.objects) == len(scene.objects) and new.background == scene.background
    elif words[0] == "move":
        (old,) = [o for o in scene.objects if o.shape == words[2]]
        target = " ".join(words[5:])
        assert scene.object_at(target) is None
        assert new.object_at(target) == Obj(old.shape, old.color, old.size, target)
        assert new.object_at(old.position) is None
    elif words[0] == "remove":
        assert len(scene.objects) == 2 and len(new.objects) == 1
        assert new.objects[0] in scene.objects and new.objects[0].shape != words[2]
    elif words[0] == "add":
        size, color, shape, position = words[2], words[3], words[4], " ".join(words[7:])
        assert len(scene.objects) == 1 and scene.object_at(position) is None
        assert set(new.objects) == set(scene.objects) | {Obj(shape, color, size, position)}
    elif words[0] == "change":
        assert new.background == words[-1] and new.objects == scene.objects
    else:
        raise AssertionError(instruction)
    if words[0] != "change":
        assert new.background == scene.background
    assert apply_edit(scene, instruction) == new


def test_every_edit_kind_is_valid_and_correct():
    rng = np.random.default_rng(8)
    seen = set()
    for scene in scenes(150, seed=8):
        for kind in EDIT_KINDS:
            try:
                instruction, new = sample_edit(scene, rng, kind)
            except ValueError:
                continue
            seen.add(kind)
            check_edit(scene, instruction, new)
        instruction, new = sample_edit(scene, rng)
        check_edit(scene, instruction, new)
    assert seen == set(EDIT_KINDS)


def test_apply_edit_refuses_invalid_or_ambiguous():
    one = Scene("white", (Obj("circle", "red", "small", "top"),))
    two = Scene("white", (Obj("circle", "red", "small", "top"), Obj("circle", "blue", "small",
                                                                   "left")))
    assert apply_edit(one, "make the circle white") is None  # colour of the background
    assert apply_edit(one, "change the background to red") is None  # hides the circle
    assert apply_edit(one, "remove the circle") is None  # scenes keep at least one object
    assert apply_edit(one, "add a small blue square at the top") is None  # cell taken
    assert apply_edit(two, "add a small blue square at the center") is None  # three objects
    assert apply_edit(two, "make the circle green") is None  # which circle?
    assert apply_edit(one, "move the square to the left") is None  # no square
    assert apply_edit(one, "paint it black") is None
    assert apply_edit(one, "Make the Circle GREEN.") == Scene(
        "white", (Obj("circle", "green", "small", "top"),))


def test_edit_sampling_is_deterministic():
    scene = scenes(1, seed=9)[0]
    a = [sample_edit(scene, np.random.default_rng(1)) for _ in range(2)]
    assert a[0] == a[1]


# ----------------------------------------------------------------------------- inpainting


def test_inpaint_target_differs_only_in_masked_cell():
    rng = np.random.default_rng(10)
    for scene in scenes(100, seed=10, n_objects=1):
        ex = sample_inpaint(scene, rng)
        assert is_valid_scene(ex.target_scene) and ex.source_scene == scene
        assert len(ex.target_scene.objects) == 2
        (new,) = set(ex.target_scene.objects) - set(scene.objects)
        assert ex.prompt == f"a {new.size} {new.color} {new.shape}" and ex.position == new.position
        before, after = render(scene), render(ex.target_scene)
        changed = (before != after).any(-1)
        assert changed.any() and not (changed & ~ex.pixel_mask).any()
        # the mask covers the whole box a large object would take in that cell
        top, left, s = world.object_box(Obj("square", "red", "large", new.position))
        assert ex.pixel_mask[top:top + s, left:left + s].all()
        assert np.array_equal(np.kron(ex.cell_mask, np.ones((4, 4), bool)), ex.pixel_mask)
        assert np.array_equal(composite(before, after, ex.pixel_mask), after)
        assert parse_image(composite(before, after, ex.pixel_mask)) == ex.target_scene


def test_inpaint_masks_partition_the_image():
    total = sum(inpaint_masks(p)[1].astype(int) for p in POSITIONS)
    assert (total == 1).all()


def test_inpaint_refuses_two_object_scenes_and_is_deterministic():
    with pytest.raises(ValueError):
        sample_inpaint(scenes(1, n_objects=2)[0], np.random.default_rng(0))
    scene = scenes(1, seed=11, n_objects=1)[0]
    a = sample_inpaint(scene, np.random.default_rng(2))
    b = sample_inpaint(scene, np.random.default_rng(2))
    assert (a.prompt, a.target_scene) == (b.prompt, b.target_scene)
    with pytest.raises(ValueError):
        composite(render(scene), render(scene), a.pixel_mask[:32])


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_covers_every_generated_text():
    rng = np.random.default_rng(12)
    vocab = set(vocabulary())
    texts = []
    for scene in scenes(100, seed=12):
        texts += [caption(scene), sample_prompt(scene, rng), *sample_qa(scene, rng),
                  sample_edit(scene, rng)[0]]
        if len(scene.objects) == 1:
            texts.append(sample_inpaint(scene, rng).prompt)
    words = {w for t in texts for w in t.lower().replace("?", " ? ").split()}
    assert words <= vocab
    assert set(COLORS) <= vocab


def test_is_there_near_misses_share_one_word_with_an_object_that_is_there():
    from app.demo.world import sample_is_there

    rng = np.random.default_rng(8)
    answers = []
    for scene in scenes(200, seed=8):
        question, answer = sample_is_there(scene, rng)
        assert answer == expected_answer(scene, question), question
        words = normalize_text(question)
        color, shape = words[-2], words[-1]
        if answer == "no":  # a near miss: exactly one of colour and shape matches an object
            assert color != scene.background
            assert any((o.color == color) != (o.shape == shape) for o in scene.objects)
        answers.append(answer)
    assert 0.4 < answers.count("yes") / len(answers) < 0.6
