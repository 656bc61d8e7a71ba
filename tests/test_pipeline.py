"""The engine pipeline on a demo-format folder (real tokenizer and codec, random weights)."""

import numpy as np
import pytest

from app.demo import world
from app.engine import Cancelled, CheckpointError
from app.engine.jobs import JobError, JobSpec
from app.engine.pipeline import MASK_PLACEHOLDER, Pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from app.demo.train import build_assets, fresh_model, write_folder

    tokenizer, codec, config = build_assets(seed=0)
    folder = tmp_path_factory.mktemp("demo") / "random-demo"
    write_folder(folder, fresh_model(config, seed=0), tokenizer, codec)
    return Pipeline.load(folder)


@pytest.fixture(scope="module")
def scene_image():
    return world.render(world.Scene("white", (world.Obj("circle", "red", "large", "center"),)))


def image_blocks(pipeline, prompt: str) -> int:
    """How many 32-column blocks a 256-code canvas after this prompt's prefix touches."""
    prefix = len(pipeline.prompts.text_to_image(prompt, 16, 16).prefix)
    return (prefix + 256 - 1) // 32 - prefix // 32 + 1


@pytest.mark.parametrize("schedule", ["blocks", "canvas"])
def test_generate_streams_previews_until_every_cell_is_committed(pipeline, schedule):
    views = []
    prompt = "a large red circle"
    result = pipeline.run(JobSpec("generate", prompt, params={
        "seed": 2, "image_steps": 6, "image_schedule": schedule}), on_step=views.append)
    assert result.image.shape == (64, 64, 3) and result.tokens.shape == (16, 16)
    # blocks: up to image_steps per block (a block whose cells all pass the threshold early ends
    # early), top to bottom (spec §5.2); canvas: image_steps in all
    steps = 6 * image_blocks(pipeline, prompt) if schedule == "blocks" else 6
    assert views[0].total == steps and [v.index for v in views] == list(range(len(views)))
    assert len(views) <= steps if schedule == "blocks" else len(views) == steps
    assert all(v.preview.shape == (16, 16, 3) for v in views)
    masked = [int(v.masked.sum()) for v in views]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    committed = np.concatenate([v.positions for v in views])
    assert sorted(committed.tolist()) == list(range(256))
    assert views[0].expert_counts.shape == (3, 8)
    assert result.params["seed"] == 2 and result.timings["total"] > 0


def test_same_seed_same_image_and_different_seed_differs(pipeline):
    def draw(seed):
        return pipeline.run(JobSpec("generate", "a small blue square", params={
            "seed": seed, "image_steps": 4, "temperature": 1.0})).image

    assert np.array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))


@pytest.mark.parametrize("schedule", ["blocks", "canvas"])
def test_inpaint_only_frees_masked_cells_and_keeps_other_pixels(pipeline, scene_image, schedule):
    cell_mask, pixel_mask = world.inpaint_masks("top left")
    views = []
    result = pipeline.run(JobSpec("inpaint", "a small yellow triangle", images=[scene_image],
                                  mask=pixel_mask, params={"image_steps": 4,
                                                           "image_schedule": schedule}),
                          on_step=views.append)
    if schedule == "blocks":  # blocks without a masked cell are skipped, not stepped through
        assert 1 <= len(views) <= views[0].total < 4 * 9
    committed = np.concatenate([v.positions for v in views])
    assert set(committed.tolist()) == set(np.flatnonzero(cell_mask.reshape(-1)).tolist())
    assert np.array_equal(result.image[~pixel_mask], scene_image[~pixel_mask])


def test_ask_streams_partial_text_with_placeholders(pipeline, scene_image):
    views = []
    result = pipeline.run(JobSpec("ask", "what color is the circle", images=[scene_image],
                                  params={"text_steps": 4, "threshold": 1.01}),
                          on_step=views.append)
    assert len(views) >= 2 and MASK_PLACEHOLDER in views[0].text
    assert isinstance(result.text, str)


def test_partial_text_shows_placeholders_only_up_to_the_block_being_decoded(pipeline):
    """A long answer (the spec's thinking is 4096 tokens) streams the blocks decoded so far, not
    one placeholder per token of the whole generation length."""
    views = []
    pipeline.run(JobSpec("chat", "hello", params={"gen_length": 256, "block_length": 32,
                                                  "text_steps": 64, "threshold": 1.01}),
                 on_step=views.append)
    counts = [v.text.split().count(MASK_PLACEHOLDER) for v in views]
    assert 0 < counts[0] < 32  # the first block (aligned to the sequence: maybe partial)
    assert max(counts) <= 32, counts  # never the whole 256-token generation


def test_large_input_images_are_fitted_to_the_codec(pipeline):
    big = np.repeat(np.repeat(world.render(world.sample_scene(np.random.default_rng(1))), 5, 0),
                    7, 1)
    result = pipeline.run(JobSpec("edit", "make the circle blue", images=[big],
                                  params={"image_steps": 2}))
    assert result.image.shape == (64, 64, 3)


def test_cancel_between_steps(pipeline):
    calls = []
    with pytest.raises(Cancelled):
        pipeline.run(JobSpec("generate", "a red circle", params={"image_steps": 8}),
                     on_step=calls.append, should_cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3


@pytest.mark.parametrize("job,needle", [
    (JobSpec("edit", "make it red"), "needs an image"),
    (JobSpec("inpaint", "a red circle", images=[np.zeros((64, 64, 3), np.uint8)]), "mask"),
    (JobSpec("inpaint", "a red circle", images=[np.zeros((64, 64, 3), np.uint8)],
             mask=np.zeros((64, 64), bool)), "empty"),
    (JobSpec("inpaint", "a red circle", images=[np.zeros((64, 64, 3), np.uint8)],
             mask=np.ones((32, 32), bool)), "must match"),
    (JobSpec("paint", "x"), "unknown task"),
    (JobSpec("generate", "a red circle", params={"self_check": -1, "image_steps": 2}),
     "self_check is the number of redraws"),
    (JobSpec("generate", "a red circle", params={"self_check": 1.5, "image_steps": 2}),
     "whole number"),
])
def test_bad_jobs_raise_clear_errors(pipeline, job, needle):
    with pytest.raises(JobError, match=needle):
        pipeline.run(job)


def test_unknown_words_are_reported(pipeline):
    result = pipeline.run(JobSpec("chat", "hello zeppelin", params={"text_steps": 2}))
    assert any("zeppelin" in w for w in result.warnings)


def test_unsupported_codec_names_the_folder(tmp_path, pipeline):
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(pipeline.folder, folder)
    (folder / "image_tokenizer" / "config.json").write_text(json.dumps({"codec": "sigvq"}))
    with pytest.raises(CheckpointError, match="sigvq"):
        Pipeline.load(folder)


def test_missing_tokenizer_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        Pipeline.load(tmp_path)


def test_thinking_mode_writes_text_first_then_draws_after_it(pipeline, monkeypatch):
    """llada2_uni.md §4.4: phase 1 streams text steps, phase 2 draws with the thinking (and an
    explicit image header) appended to the phase-1 prompt."""
    layouts = []
    real = pipeline.prompts.thinking_to_image
    monkeypatch.setattr(pipeline.prompts, "thinking_to_image",
                        lambda *a: layouts.append(real(*a)) or layouts[-1])
    views = []
    result = pipeline.run(JobSpec("generate", "a red circle", params={
        "seed": 1, "thinking": True, "thinking_steps": 4, "thinking_length": 32,
        "thinking_temperature": 1.0, "image_steps": 3, "image_schedule": "canvas"}),
        on_step=views.append)
    phases = [v.phase for v in views]
    thinking = [v for v in views if v.phase == "thinking"]
    assert thinking and phases == ["thinking"] * len(thinking) + [None] * 3
    assert all(v.text is not None and v.preview is None for v in thinking)
    assert all(v.preview.shape == (16, 16, 3) for v in views[len(thinking):])
    assert isinstance(result.thinking, str) and result.image.shape == (64, 64, 3)
    prompts = pipeline.prompts
    (layout,) = layouts
    start = prompts.thinking_prompt("a red circle")
    assert layout.prefix[:len(start)] == start
    assert layout.prefix[-4:] == prompts.image_header(16, 16)
    thought = layout.prefix[len(start):-4]
    assert prompts.decode_text(thought) == result.thinking
    assert not set(thought) & {prompts.ids.soi, prompts.ids.boi, prompts.ids.eos, prompts.ids.mask}
    plain = pipeline.run(JobSpec("generate", "a red circle", params={
        "seed": 1, "thinking": False, "image_steps": 3, "image_schedule": "canvas"}))
    assert plain.thinking is None and len(layouts) == 1


def test_thinking_text_ends_at_the_image_header_or_eos(pipeline):
    prompts = pipeline.prompts
    words = prompts.text("a large red circle at the top left")
    header = prompts.image_header(16, 16)
    assert prompts.thinking_text_ids(words + header + [prompts.ids.eos]) == words
    assert prompts.thinking_text_ids(words + [prompts.ids.eos] + words) == words
    assert prompts.thinking_text_ids(words + [prompts.ids.mask] + words) == words
    uncond = prompts.thinking_to_image("a red circle", words, 16, 16).uncond_prefix
    assert uncond == prompts.thinking_prompt("<uncondition>") + header


@pytest.fixture
def prompts_written(pipeline, monkeypatch):
    """Every prompt the pipeline decodes text after, in order, with what was written."""
    seen = []
    real = pipeline._write_text

    def recording(prompt, *args, **kwargs):
        tokens = real(prompt, *args, **kwargs)
        seen.append((list(prompt), pipeline.prompts.thinking_text_ids(tokens.tolist())))
        return tokens

    monkeypatch.setattr(pipeline, "_write_text", recording)
    return seen


def test_edit_thinking_describes_rewrites_then_draws_the_rewrite(pipeline, scene_image,
                                                                 prompts_written):
    views = []
    result = pipeline.run(JobSpec("edit", "make the circle blue", images=[scene_image], params={
        "seed": 2, "edit_thinking": True, "thinking_steps": 4, "thinking_length": 32,
        "image_steps": 3, "image_schedule": "canvas"}), on_step=views.append)
    phases = [v.phase for v in views]
    thinking = phases.count("thinking")
    assert thinking >= 2 and phases[thinking:] == [None] * 3
    prompts = pipeline.prompts
    (describe, described), (rewrite, _) = prompts_written
    assert describe == prompts.describe([pipeline._grid_of(scene_image)])
    description, edited = result.thinking.split(" → ")
    assert prompts.decode_text(described) == description
    # the text step reads the description and the instruction, not the image
    assert rewrite == prompts.rewrite_description("make the circle blue", described)
    assert prompts.ids.boi not in rewrite
    last = [v for v in views if v.phase == "thinking"][-1]
    assert last.text.startswith(f"{description} → ")  # the description stays in view
    assert isinstance(edited, str) and result.image.shape == (64, 64, 3)
    plain = pipeline.run(JobSpec("edit", "make the circle blue", images=[scene_image],
                                 params={"seed": 2, "image_steps": 3}))
    assert plain.thinking is None


def test_answer_thinking_describes_first_then_answers_from_the_description(
        pipeline, scene_image, prompts_written):
    views = []
    result = pipeline.run(JobSpec("ask", "what color is the circle?", images=[scene_image],
                                  params={"seed": 2, "ask_thinking": True, "thinking_steps": 4,
                                          "thinking_length": 32, "text_steps": 4}),
                          on_step=views.append)
    phases = [v.phase for v in views]
    thinking = phases.count("thinking")
    assert thinking >= 1 and set(phases[thinking:]) == {None}
    assert isinstance(result.thinking, str) and isinstance(result.text, str)
    prompts = pipeline.prompts
    (describe, described), (answer, _) = prompts_written
    assert describe == prompts.describe([pipeline._grid_of(scene_image)])
    assert prompts.decode_text(described) == result.thinking
    assert answer == prompts.answer_from_description("what color is the circle?", described)
    assert prompts.ids.boi not in answer
    plain = pipeline.run(JobSpec("ask", "what color is the circle?", images=[scene_image],
                                 params={"seed": 2, "text_steps": 4}))
    assert plain.thinking is None


def test_drawing_after_thinking_takes_its_own_guidance(pipeline, monkeypatch):
    """cfg_after_thinking: the model's default for drawings that follow a thinking; a job's own
    cfg (or cfg_after_thinking) still wins, and drawings without thinking keep cfg."""
    import app.engine.pipeline as pipeline_module

    scales = []
    real = pipeline_module.CanvasRun

    def recording(*args, **kwargs):
        scales.append(kwargs["cfg_scale"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "CanvasRun", recording)
    monkeypatch.setitem(pipeline.defaults, "cfg", 2.0)

    def draw(thinking: bool, **params) -> float:
        pipeline.run(JobSpec("generate", "a red circle", params={
            "seed": 1, "thinking": thinking, "thinking_steps": 1, "thinking_length": 32,
            "image_steps": 2, "image_schedule": "canvas", **params}))
        return scales[-1]

    assert draw(True) == 2.0  # no default of its own: cfg, as the reference
    monkeypatch.setitem(pipeline.defaults, "cfg_after_thinking", 1.0)
    assert draw(True) == 1.0
    assert draw(False) == 2.0
    assert draw(True, cfg=3.0) == 3.0
    assert draw(True, cfg=3.0, cfg_after_thinking=1.5) == 1.5
    scene = world.Scene("white", (world.Obj("circle", "red", "large", "center"),))
    pipeline.run(JobSpec("edit", "make the circle blue", images=[world.render(scene)],
                         params={"seed": 1, "image_steps": 2, "image_schedule": "canvas"}))
    assert scales[-1] == 2.0


def test_read_back_scores_a_text_as_the_answer_with_every_slot_masked(pipeline):
    """self_check.read_back: the answer slots after a prompt are all masked, so what the model
    reads there does not depend on the target; a target that is its first choice everywhere
    (eos included) passes, any other does not and scores lower."""
    from app.engine.self_check import read_back

    model, ids = pipeline.model, pipeline.prompts.ids
    prompt = pipeline.prompts.describe([pipeline._grid_of(world.render(world.Scene(
        "white", (world.Obj("circle", "red", "large", "center"),))))])
    probe = read_back(model, prompt, [5] * 7, mask_id=ids.mask, eos_id=ids.eos, block_length=32)
    target, end = probe.tokens[:6], probe.tokens[6]  # its first choices; slot 7 plays eos
    best = read_back(model, prompt, target, mask_id=ids.mask, eos_id=end, block_length=32)
    assert best.passed and best.tokens == target
    other = [t + 1 for t in target[:1]] + target[1:]
    worse = read_back(model, prompt, other, mask_id=ids.mask, eos_id=end, block_length=32)
    assert not worse.passed and worse.score < best.score and worse.tokens == target
    with pytest.raises(ValueError):
        read_back(model, prompt, [], mask_id=ids.mask, eos_id=ids.eos, block_length=32)


SELF_CHECKED = {"thinking": True, "thinking_steps": 4, "thinking_length": 32,
                "thinking_temperature": 0.0, "image_steps": 3, "image_schedule": "canvas",
                "text_steps": 4}


def test_self_check_redraws_with_the_next_seeds_and_keeps_the_best_scoring(pipeline):
    """Random weights never describe their picture as their thinking: every redraw runs, each
    drawing is streamed under its attempt, and the kept picture is the best-scoring one, the
    very one a plain job with that seed draws."""
    views = []
    result = pipeline.run(JobSpec("generate", "a red circle", params={
        **SELF_CHECKED, "seed": 7, "self_check": 2}), on_step=views.append)
    checks = result.checks
    assert [(c.attempt, c.seed, c.passed) for c in checks] == [
        (0, 7, False), (1, 8, False), (2, 9, False)]
    assert [v.attempt for v in views if v.phase is None] == [0] * 3 + [1] * 3 + [2] * 3
    kept = max(checks, key=lambda c: c.score)
    assert [c.kept for c in checks] == [c is kept for c in checks]
    assert any(w.startswith("self-check: in 3 drawings") and f"kept drawing {kept.attempt + 1}"
               in w for w in result.warnings)
    # thinking is greedy here, so a plain job at the kept seed thinks and draws the same
    plain = pipeline.run(JobSpec("generate", "a red circle", params={
        **SELF_CHECKED, "seed": kept.seed}))
    assert plain.checks == [] and np.array_equal(plain.tokens, result.tokens)


def test_a_picture_that_reads_back_is_kept_at_once(pipeline, monkeypatch):
    """When the model's description of its picture is the text it drew from, there is no
    redraw and the picture is the one the job draws without a self-check."""
    described = []

    def describe_as_drawn(grids, params, on_step, should_cancel):
        described.append(grids)
        return pipeline.prompts.text("a large red circle"), "a large red circle"

    monkeypatch.setattr(pipeline.prompts, "thinking_text_ids",
                        lambda tokens: pipeline.prompts.text("a large red circle"))
    plain = pipeline.run(JobSpec("generate", "a red circle", params={**SELF_CHECKED, "seed": 3}))
    monkeypatch.setattr(pipeline, "_describe", describe_as_drawn)
    result = pipeline.run(JobSpec("generate", "a red circle", params={
        **SELF_CHECKED, "seed": 3, "self_check": 2}))
    assert [(c.attempt, c.passed, c.read, c.kept) for c in result.checks] == [
        (0, True, "a large red circle", True)]
    assert np.array_equal(result.tokens, plain.tokens) and not result.warnings
    # it read the picture as it would come back in: decoded, then encoded again
    codec = pipeline.codec
    assert np.array_equal(described[0][0], codec.encode(codec.decode(plain.tokens)))
