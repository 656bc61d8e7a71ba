"""The shipped demo model end to end through the `unmask` command (real processes, real files)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.demo import world
from app.imageio import decode_image, encode_png, read_png_text
from app.paths import DEFAULT_MODEL


def unmask(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"unmask {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    scene = world.Scene("white", (world.Obj("circle", "red", "large", "center"),))
    path = folder / "scene.png"
    path.write_bytes(encode_png(world.render(scene)))
    return scene, path


def test_demo_model_is_shipped_small_enough():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.rglob("*") if p.is_file())
    assert (DEFAULT_MODEL / "config.json").is_file() and size <= 40 * 2**20


def test_generate_writes_png_with_parameters_and_frames(tmp_path):
    out, frames = tmp_path / "out.png", tmp_path / "frames"
    unmask("generate", "a large blue square at the center on a white background", "-o", out,
           "--seed", 3, "--steps", 8, "--frames", frames)
    data = out.read_bytes()
    assert decode_image(data).shape == (64, 64, 3)
    meta = read_png_text(data)
    assert meta["seed"] == "3" and meta["mode"] == "generate" and "blue square" in meta["prompt"]
    # --steps is per 32-code block (spec §5.2): at least one frame per block, at most 8
    assert 8 <= len(list(frames.glob("step_*.png"))) <= 8 * 9


def test_same_seed_same_image(tmp_path):
    for name in ("a.png", "b.png"):
        unmask("generate", "a small green triangle", "-o", tmp_path / name, "--seed", 11,
               "--steps", 6)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_ask_answers_about_an_image(scene_png):
    _, path = scene_png
    assert unmask("ask", path, "What color is the circle?").stdout.strip() == "red"


def test_inpaint_keeps_pixels_outside_the_mask(tmp_path, scene_png):
    scene, path = scene_png
    _, pixel_mask = world.inpaint_masks("top left")
    mask_path = tmp_path / "mask.png"
    mask_path.write_bytes(encode_png(np.repeat(pixel_mask[..., None], 3, 2).astype(np.uint8) * 255))
    out = tmp_path / "inpainted.png"
    unmask("inpaint", path, mask_path, "a small yellow triangle", "-o", out, "--seed", 1)
    result = decode_image(out.read_bytes())
    assert np.array_equal(result[~pixel_mask], world.render(scene)[~pixel_mask])


def test_unknown_words_warn_but_still_answer(scene_png):
    _, path = scene_png
    proc = unmask("ask", path, "what colour is the zeppelin")
    assert "warning" in proc.stderr and "zeppelin" in proc.stderr
    assert proc.stdout.strip() != ""


def test_unreadable_image_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = unmask("ask", bad, "what color is the background", check=False)
    assert proc.returncode == 2 and "broken.png" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_mask_file_is_a_clear_error_naming_it(tmp_path, scene_png):
    _, image = scene_png
    missing = tmp_path / "no-such-mask.png"
    proc = unmask("inpaint", image, missing, "a small yellow triangle", "-o", tmp_path / "x.png",
                  check=False)
    assert proc.returncode == 2 and "no-such-mask.png: cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_model_folder_is_a_clear_error(tmp_path):
    proc = unmask("generate", "a red circle", "-o", tmp_path / "x.png", "--model", tmp_path,
                  check=False)
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr


def test_batch_runs_jobs_in_order_and_reports_errors(tmp_path, scene_png):
    _, path = scene_png
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(j) for j in [
        {"task": "generate", "prompt": "a large red circle", "seed": 1},
        {"task": "ask", "question": "What color is the circle?", "image": str(path)},
        {"task": "edit", "instruction": "make the circle blue", "image": str(tmp_path / "nope.png")},
    ]))
    unmask("batch", jobs, "--out", tmp_path / "out")
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text()
               .splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3]
    assert decode_image(Path(results[0]["image"]).read_bytes()).shape == (64, 64, 3)
    assert results[1]["text"] == "red"
    assert "nope.png" in results[2]["error"]


def test_generate_thinks_first_and_keeps_the_thinking_in_the_png(tmp_path):
    """The shipped model thinks by default (llada2_uni.md §4.4): it writes a full caption that
    keeps what the prompt said, then draws; --no-thinking draws from the prompt directly."""
    out = tmp_path / "think.png"
    lines = unmask("generate", "a red circle", "-o", out, "--seed", 2).stdout.splitlines()
    (thought,) = [line.removeprefix("thinking: ") for line in lines
                  if line.startswith("thinking: ")]
    assert read_png_text(out.read_bytes())["thinking"] == thought
    stated = world.parse_prompt(thought)
    assert [(o.color, o.shape) for o in stated.objects] == [("red", "circle")], thought
    plain = tmp_path / "plain.png"
    proc = unmask("generate", "a red circle", "-o", plain, "--seed", 2, "--no-thinking")
    assert "thinking:" not in proc.stdout and "thinking" not in read_png_text(plain.read_bytes())
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "generate", "prompt": "a red circle", "seed": 1,
                                "thinking": "yes"}) + "\n")
    unmask("batch", jobs, "--out", tmp_path / "batch")
    (record,) = [json.loads(line) for line in (tmp_path / "batch" / "results.jsonl").open()]
    assert "true or false" in record["error"]


def test_ask_and_edit_take_the_thinking_switch(tmp_path, scene_png):
    """--thinking / --no-thinking and a batch job's "thinking" switch each task's own thinking
    mode (ask: describe first; edit: describe the edited picture first). An answer's thinking
    goes to stderr, so stdout stays the answer alone."""
    _, path = scene_png
    thought = unmask("ask", path, "what color is the circle?", "--thinking", "--seed", 1)
    assert thought.stderr.count("thinking: ") == 1 and len(thought.stdout.splitlines()) == 1
    plain = unmask("ask", path, "what color is the circle?", "--no-thinking", "--seed", 1)
    assert "thinking: " not in plain.stderr and plain.stdout.strip() == "red"
    edited = unmask("edit", path, "make the circle blue", "-o", tmp_path / "e.png", "--thinking")
    assert edited.stdout.startswith("thinking: ")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"task": "ask", "question": "what color is the circle?",
                                        "image": str(path), "seed": 1, "thinking": on}) + "\n"
                            for on in (True, False)))
    unmask("batch", jobs, "--out", tmp_path / "batch")
    on, off = [json.loads(line) for line in (tmp_path / "batch" / "results.jsonl").open()]
    assert isinstance(on["thinking"], str) and "thinking" not in off and off["text"] == "red"


def test_self_check_reads_each_drawing_back_and_names_its_redraws(tmp_path):
    """--self-check N: after drawing from its thinking the model describes its own picture; each
    drawing's read-back goes to stderr, a redraw's frames get their own names, and a batch job
    reports its checks (or a clear error for a bad count)."""
    frames = tmp_path / "frames"
    proc = unmask("generate", "a red circle at the top left and a blue square at the right",
                  "-o", tmp_path / "c.png", "--seed", 3, "--self-check", 2, "--frames", frames)
    checks = [line for line in proc.stderr.splitlines() if line.startswith("self-check: ")]
    assert checks and checks[0].startswith("self-check: drawing 1 (seed 3) read back ")
    # every drawing but the last failed its check, and each one drawn left its frames
    assert all("not as meant" in line for line in checks[:-1])
    assert world.parse_prompt(checks[0].split(": ", 2)[2].strip("'\"")).objects
    redraws = {p.name.split("_")[0] for p in frames.glob("redraw*_step_*.png")}
    assert redraws == {f"redraw{k}" for k in range(1, len(checks))}
    plain = unmask("generate", "a red circle", "-o", tmp_path / "p.png", "--self-check", 0)
    assert "self-check" not in plain.stderr
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"task": "generate", "prompt": "a red circle", "seed": 1,
                                        "self_check": n}) + "\n" for n in (1, -1)))
    unmask("batch", jobs, "--out", tmp_path / "batch")
    good, bad = [json.loads(line) for line in (tmp_path / "batch" / "results.jsonl").open()]
    assert good["checks"][0]["attempt"] == 0 and isinstance(good["checks"][0]["read"], str)
    assert "self_check" in bad["error"]
