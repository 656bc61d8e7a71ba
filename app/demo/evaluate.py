"""`unmask eval`: how well a model does the ShapesWorld tasks, judged by the scene parser.

Held-out scenes come from a seed range the training never draws from (training uses seeds
0..N; evaluation starts at EVAL_SEED).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from app.demo import world
from app.engine.jobs import JobSpec

EVAL_SEED = 1_000_003


@dataclass
class Score:
    name: str
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, ok: bool, note: str) -> None:
        self.total += 1
        self.passed += int(ok)
        if not ok and len(self.failures) < 5:
            self.failures.append(note)

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


def evaluate(pipeline, n: int = 50, seed: int = EVAL_SEED, params: dict | None = None) -> dict:
    params = dict(params or {})
    rng = np.random.default_rng(seed)
    scores = {k: Score(k) for k in ("t2i_one", "t2i_two", "vqa", "edit", "inpaint", "codec")}
    image_seconds = []
    for i in range(n):
        job_params = {**params, "seed": seed + i}
        for count, key in ((1, "t2i_one"), (2, "t2i_two")):
            ok, note, seconds = judge_t2i(pipeline, rng, count, job_params)
            image_seconds.append(seconds)
            scores[key].add(ok, note)
        scene = world.sample_scene(rng)
        question, answer = world.sample_qa(scene, rng)
        got = pipeline.run(JobSpec("ask", question, images=[world.render(scene)],
                                   params=job_params)).text
        scores["vqa"].add(got == answer, f"{question!r}: {got!r} != {answer!r}")
        edit = judge_edit(pipeline, rng, job_params)
        scores["edit"].add(edit.ok, edit.note)
        scores["inpaint"].add(*judge_inpaint(pipeline, rng, job_params))
        codec = pipeline.codec
        scene = world.sample_scene(rng)
        back = world.parse_image(codec.decode(codec.encode(world.render(scene))))
        scores["codec"].add(back == scene, world.caption(scene))
    report = {k: {"rate": round(s.rate, 4), "passed": s.passed, "total": s.total,
                  "failures": s.failures} for k, s in scores.items()}
    report["seconds_per_image_median"] = round(statistics.median(image_seconds), 4)
    return report


def judge_t2i(pipeline, rng: np.random.Generator, n_objects: int,
              params: dict) -> tuple[bool, str, float]:
    """Draw a held-out scene's prompt; whether every stated attribute is right (by the scene
    parser), a note on what came out, and the seconds the job took."""
    scene = world.sample_scene(rng, n_objects=n_objects)
    prompt = world.sample_prompt(scene, rng)
    result = pipeline.run(JobSpec("generate", prompt, params=params))
    parsed = world.parse_image(result.image)
    ok = parsed is not None and world.satisfies(parsed, world.parse_prompt(prompt))
    thought = "" if result.thinking is None else f" (thinking {result.thinking!r})"
    return ok, f"{prompt!r}{thought} -> {parsed and world.caption(parsed)}", \
        result.timings["total"]


@dataclass
class EditOutcome:
    scene: world.Scene  # the source
    instruction: str
    target: world.Scene  # what the edit should make
    image: np.ndarray  # what the model made
    parsed: world.Scene | None  # what the scene parser reads there (None: unreadable)

    @property
    def ok(self) -> bool:
        return self.parsed == self.target

    @property
    def note(self) -> str:
        return (f"{self.instruction!r} on {world.caption(self.scene)!r} -> "
                f"{self.parsed and world.caption(self.parsed)}")


def judge_edit(pipeline, rng: np.random.Generator, params: dict) -> EditOutcome:
    """Edit a held-out scene by a held-out instruction; what came out, judged by the parser."""
    scene = world.sample_scene(rng)
    instruction, target = world.sample_edit(scene, rng)
    result = pipeline.run(JobSpec("edit", instruction, images=[world.render(scene)],
                                  params=params))
    return EditOutcome(scene, instruction, target, result.image, world.parse_image(result.image))


def judge_inpaint(pipeline, rng: np.random.Generator, params: dict) -> tuple[bool, str]:
    """Inpaint a held-out one-object scene's masked cell; whether the result parses as exactly
    the target scene (the object drawn there, the rest kept), and a note on what came out."""
    example = world.sample_inpaint(world.sample_scene(rng, n_objects=1), rng)
    result = pipeline.run(JobSpec("inpaint", example.prompt,
                                  images=[world.render(example.source_scene)],
                                  mask=example.pixel_mask, params=params))
    parsed = world.parse_image(result.image)
    return parsed == example.target_scene, (f"{example.prompt!r} at {example.position} -> "
                                            f"{parsed and world.caption(parsed)}")


def format_report(report: dict) -> str:
    lines = [f"{'task':<10}{'score':>8}{'passed':>10}"]
    for key, value in report.items():
        if isinstance(value, dict):
            lines.append(f"{key:<10}{100 * value['rate']:>7.1f}%{value['passed']:>6}/"
                         f"{value['total']}")
    lines.append(f"median time per 64x64 image: {report['seconds_per_image_median']:.3f} s")
    return "\n".join(lines)
