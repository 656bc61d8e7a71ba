"""One Generate request inside the worker: decode inputs, run the engine, encode the result.

Every way a job can end becomes exactly one Done or Failed whose message a user can act on.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

from app.imageio import ImageError, decode_image, decode_mask, encode_png
from app.protocol import Done, ExpertActivity, Failed, Generate, Started, Step

if TYPE_CHECKING:
    from app.worker.host import Host, Outbox


def run_job(host: Host, request: Generate, cancel: threading.Event) -> Done | Failed:
    job_id = request.job_id
    host.outbox.put(Started(job_id))
    if host.pipeline is None:
        return Failed(job_id, "model", "No model is loaded: load a model folder first.")
    start = time.perf_counter()
    try:
        count = len(request.images)
        images = [
            decode_image(data, name="the image" if count == 1 else f"image {i + 1} of {count}")
            for i, data in enumerate(request.images)
        ]
        mask = None if request.mask is None else decode_mask(request.mask, name="the mask")
    except ImageError as exc:
        return Failed(job_id, "bad_input", str(exc))
    decoded = time.perf_counter()
    if cancel.is_set():
        return Failed(job_id, "cancelled", "Cancelled.")
    from app.engine.jobs import JobSpec  # torch is loaded by now: a model is

    spec = JobSpec(task=request.task, prompt=request.prompt, images=images, mask=mask,
                   params=dict(request.params))
    try:
        result = host.pipeline.run(spec, on_step=StepEmitter(job_id, host.outbox),
                                   should_cancel=cancel.is_set)
    except Exception as exc:
        if _is_cancelled(exc, cancel):
            return Failed(job_id, "cancelled", "Cancelled.")
        jobs = sys.modules.get("app.engine.jobs")
        if jobs is not None and isinstance(exc, jobs.JobError):
            # "unsupported" = the model folder cannot do this task: the model's limit, not the
            # user's input.
            kind = {"bad_input": "bad_input", "model": "model", "unsupported": "model"}.get(
                exc.kind, "bad_input")
            return Failed(job_id, kind, str(exc))
        if is_out_of_memory(exc):
            return Failed(job_id, "model", "Out of memory while running this job: try fewer "
                          "steps, a smaller image, or a placement that keeps more experts on "
                          "the CPU.")
        traceback.print_exc()
        return Failed(job_id, "internal", f"Internal error in the engine ({type(exc).__name__}: "
                      f"{exc}); the traceback is in the app's log.")
    ran = time.perf_counter()
    image_png = None
    if result.image is not None:
        try:
            image_png = encode_png(result.image, png_text(host, request, result.params,
                                                          result.thinking))
        except (ValueError, TypeError, OSError) as exc:
            return Failed(job_id, "internal", f"The engine returned an image that cannot be "
                          f"saved as PNG ({exc}).")
    timings = dict(result.timings)
    timings.update(decode_inputs=decoded - start, encode_png=time.perf_counter() - ran,
                   job=time.perf_counter() - start)
    return Done(job_id, image_png=image_png, text=result.text, thinking=result.thinking,
                tokens=result.tokens,
                timings=timings, warnings=list(result.warnings), params=dict(result.params),
                checks=[check.as_dict() for check in result.checks])


def _is_cancelled(exc: BaseException, cancel: threading.Event) -> bool:
    # app.engine.generate.Cancelled, checked without importing torch just for the isinstance.
    generate = sys.modules.get("app.engine.generate")
    if generate is not None and isinstance(exc, generate.Cancelled):
        return True
    return cancel.is_set() and type(exc).__name__ == "Cancelled"


def png_text(host: Host, request: Generate, params: dict[str, Any],
             thinking: str | None = None) -> dict[str, str]:
    """PNG text chunks: everything needed to reproduce the image (DESIGN.md §6), and in thinking
    mode what the model wrote before drawing."""
    resolved = {**request.params, **params}
    chunks = {
        "Software": "Unmask Studio",
        "prompt": request.prompt,
        "task": request.task,
        "model": str(getattr(host.pipeline, "folder", host.model_path) or ""),
        "parameters": json.dumps(resolved, sort_keys=True, default=str),
    }
    for key in ("seed", "steps", "image_steps", "cfg"):
        if resolved.get(key) is not None:
            chunks[key] = str(resolved[key])
    if thinking is not None:
        chunks["thinking"] = thinking
    return chunks


class StepEmitter:
    """Engine on_step(StepView) -> Step + ExpertActivity events."""

    def __init__(self, job_id: str, outbox: Outbox):
        self.job_id, self.outbox = job_id, outbox
        self.activity: np.ndarray | None = None

    def __call__(self, view: Any) -> None:
        counts = view.expert_counts
        self.outbox.put(Step(
            job_id=self.job_id, index=int(view.index), total=int(view.total),
            positions=view.positions, tokens=view.tokens, confidence=view.confidence,
            revised=view.revised, preview=view.preview, text=view.text,
            expert_counts=None if counts is None else np.asarray(counts).astype(np.int32),
            masked=getattr(view, "masked", None), phase=getattr(view, "phase", None),
            attempt=int(getattr(view, "attempt", 0)), sent_at=time.time(),
        ))
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64)
            # A new array each time (never +=): an event already queued must not change later.
            self.activity = counts if self.activity is None else self.activity + counts
            self.outbox.put(ExpertActivity(self.job_id, self.activity))


def is_out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError is matched by name so the host needs no torch import.
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )
