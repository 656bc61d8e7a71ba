"""`unmask generate | ask | edit | inpaint | batch | eval`: jobs run in this process.

The CLI loads the engine directly (no worker process: a script has no GUI to keep fluid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from app.paths import DEFAULT_MODEL
from app.protocol import MAX_REDRAWS, THINKING_PARAMS


def add_job_commands(sub) -> None:
    def common(p, image_out: bool = True):
        p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder")
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--steps", type=int, default=None,
                       help="denoising steps (per 32-token block for block-decoded output)")
        p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale")
        p.add_argument("--temperature", type=float, default=None)
        p.add_argument("--frames", type=Path, default=None, help="write every step's preview here")
        p.add_argument("--device", default="cpu")
        if image_out:
            p.add_argument("-o", "--output", type=Path, required=True, help="output PNG")

    p = sub.add_parser("generate", help="text to image")
    p.add_argument("prompt")
    thinking_option(p, "write a full description first, then draw it")
    self_check_option(p)
    common(p)
    p = sub.add_parser("ask", help="answer a question about an image")
    p.add_argument("image", type=Path)
    p.add_argument("question")
    thinking_option(p, "describe the image first, then answer (the description goes to stderr)")
    common(p, image_out=False)
    p = sub.add_parser("edit", help="edit an image by instruction")
    p.add_argument("image", type=Path)
    p.add_argument("instruction")
    thinking_option(p, "describe the edited picture first, then edit")
    self_check_option(p)
    common(p)
    p = sub.add_parser("inpaint", help="repaint the white area of MASK from a prompt")
    p.add_argument("image", type=Path)
    p.add_argument("mask", type=Path)
    p.add_argument("prompt")
    common(p)
    p = sub.add_parser("chat", help="one text-only turn")
    p.add_argument("message")
    common(p, image_out=False)
    p = sub.add_parser("batch", help="run a JSONL file of jobs with one model load")
    p.add_argument("jobs", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("eval", help="ShapesWorld scores of a model (held-out scenes)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("-n", type=int, default=50, help="scenes per task")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--device", default="cpu")
    thinking_option(p, "every task with or without thinking mode")
    self_check_option(p)


def thinking_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--thinking", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{what} (thinking mode; default: the model folder's setting)")


def self_check_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--self-check", type=_redraws, default=None, metavar="N",
                   help="after drawing from its thinking, the model reads its picture back and "
                        "redraws (next seed) up to N times while it does not read the text it "
                        "drew from; 0: off (default: the model folder's setting)")


def redraw_count(value) -> int:
    """A self-check redraw count as the CLI and batch jobs allow it (0..MAX_REDRAWS)."""
    if type(value) is not int or not 0 <= value <= MAX_REDRAWS:
        raise TypeError(f"\"self_check\" must be a whole number 0-{MAX_REDRAWS}, not {value!r}")
    return value


def _redraws(text: str) -> int:
    try:
        value: int | str = int(text)
    except ValueError:
        value = text  # not a number: redraw_count names it as given
    try:
        return redraw_count(value)
    except TypeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def thinking_params(task: str, on: bool | None) -> dict:
    """The job parameter that switches thinking mode for `task`, if `on` is given."""
    if on is None or task not in THINKING_PARAMS:
        return {}
    return {THINKING_PARAMS[task]: on}


def _load(model: Path, device: str):
    from app.engine.pipeline import Pipeline

    return Pipeline.load(model, device=device)


def _params(args) -> dict:
    params = {"seed": args.seed, "cfg": args.cfg}
    if args.steps is not None:
        params["image_steps"] = params["text_steps"] = args.steps
    if args.temperature is not None:
        params["temperature"] = params["text_temperature"] = args.temperature
    params.update(thinking_params(args.command, getattr(args, "thinking", None)))
    if getattr(args, "self_check", None) is not None:
        params["self_check"] = args.self_check
    return params


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from exc


def _read_image(path: Path) -> np.ndarray:
    from app.imageio import decode_image

    return decode_image(_read_bytes(path), name=str(path))


def _read_mask(path: Path) -> np.ndarray:
    from app.imageio import decode_mask

    return decode_mask(_read_bytes(path), name=str(path))


def _write_png(path: Path, image: np.ndarray, meta: dict) -> None:
    from app.imageio import encode_png

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image, {k: str(v) for k, v in meta.items()}))


def _frame_writer(folder: Path | None):
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    from app.imageio import encode_png

    def on_step(view) -> None:
        if view.preview is not None:
            big = np.repeat(np.repeat(view.preview, 8, axis=0), 8, axis=1)
            # a self-check redraw's steps get their own names beside the first drawing's
            redraw = f"redraw{view.attempt}_" if getattr(view, "attempt", 0) else ""
            (folder / f"{redraw}step_{view.index:03d}.png").write_bytes(encode_png(big))
        else:
            with open(folder / "steps.txt", "a", encoding="utf-8") as f:
                f.write(f"{view.index:03d}: {view.text}\n")

    return on_step


def run_job(pipeline, spec, on_step=None):
    result = pipeline.run(spec, on_step=on_step)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for check in result.checks:
        verdict = "as meant" if check.passed else "not as meant"
        print(f"self-check: drawing {check.attempt + 1} (seed {check.seed}) read back "
              f"{verdict}: {check.read!r}", file=sys.stderr)
    return result


def cmd_job(args) -> int:
    from app.engine.jobs import JobSpec

    task = args.command
    images, mask, prompt = [], None, getattr(args, "prompt", None)
    if task in ("ask", "edit", "inpaint"):
        images = [_read_image(args.image)]
    if task == "inpaint":
        mask = _read_mask(args.mask)
    prompt = {"ask": getattr(args, "question", None), "edit": getattr(args, "instruction", None),
              "chat": getattr(args, "message", None)}.get(task, prompt)
    pipeline = _load(args.model, args.device)
    spec = JobSpec(task, prompt, images=images, mask=mask, params=_params(args))
    result = run_job(pipeline, spec, _frame_writer(args.frames))
    if result.text is not None:
        if result.thinking is not None:  # stdout stays the answer alone
            print(f"thinking: {result.thinking}", file=sys.stderr)
        print(result.text)
    else:
        meta = {"prompt": prompt, "mode": task, "seed": result.params["seed"],
                "steps": result.params["image_steps"], "model": args.model.name}
        if result.thinking is not None:
            meta["thinking"] = result.thinking
            print(f"thinking: {result.thinking}")
        _write_png(args.output, result.image, meta)
        print(f"wrote {args.output} (seed {result.params['seed']})")
    return 0


def cmd_batch(args) -> int:
    from app.engine.jobs import JobError, JobSpec

    pipeline = _load(args.model, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = args.jobs.read_text(encoding="utf-8").splitlines()
    with open(args.out / "results.jsonl", "w", encoding="utf-8") as results:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = _batch_one(pipeline, line, number, args, JobSpec, JobError)
            results.write(json.dumps(record) + "\n")
            results.flush()
    print(f"wrote {args.out / 'results.jsonl'}")
    return 0


def _batch_one(pipeline, line, number, args, JobSpec, JobError) -> dict:
    try:
        job = json.loads(line)
        task = job["task"]
        text = job.get("prompt") or job.get("question") or job.get("instruction") or ""
        images = [_read_image(Path(job["image"]))] if job.get("image") else []
        mask = _read_mask(Path(job["mask"])) if job.get("mask") else None
        params = {"seed": job.get("seed")}
        if job.get("thinking") is not None:
            if not isinstance(job["thinking"], bool):
                raise TypeError(f"\"thinking\" must be true or false, not {job['thinking']!r}")
            params.update(thinking_params(task, job["thinking"]))
        if job.get("self_check") is not None:
            params["self_check"] = redraw_count(job["self_check"])
        spec = JobSpec(task, text, images=images, mask=mask, params=params)
        result = pipeline.run(spec)
    except (ValueError, KeyError, TypeError) as exc:  # JobError and ImageError are ValueErrors
        return {"line": number, "error": f"{type(exc).__name__}: {exc}"}
    record = {"line": number, "task": task, "seed": result.params["seed"],
              "warnings": result.warnings}
    if result.checks:
        record["checks"] = [check.as_dict() for check in result.checks]
    if result.thinking is not None:
        record["thinking"] = result.thinking
    if result.text is not None:
        record["text"] = result.text
    else:
        path = args.out / f"{number:04d}_{task}.png"
        _write_png(path, result.image, {"prompt": text, "mode": task,
                                        "seed": result.params["seed"]})
        record["image"] = str(path)
    return record


def cmd_eval(args) -> int:
    from app.demo.evaluate import evaluate, format_report

    params = {} if args.thinking is None else dict.fromkeys(THINKING_PARAMS.values(),
                                                            args.thinking)
    if args.self_check is not None:
        params["self_check"] = args.self_check
    report = evaluate(_load(args.model, args.device), n=args.n, params=params)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0
