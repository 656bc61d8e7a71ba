"""The messages between the GUI and the worker process (../shared/DESIGN.md §5).

Plain dataclasses of Python values, numpy arrays and bytes, pickled over a pipe: no torch and no
Qt here, so a GUI test can fabricate any event and the GUI never imports torch. Images travel as
encoded PNG/JPEG bytes (requests) or PNG bytes (results); only the tiny per-step previews travel
as raw uint8 arrays because they are a few KB and arrive many times a second.

Bump PROTOCOL_VERSION whenever a field is added, removed or changes meaning: the client refuses a
worker that speaks another version (a stale worker from an older install would otherwise fail in
confusing ways deep inside a job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1

# Failed.kind: what the user can do about it.
#   bad_input - fix the request (image unreadable, mask empty, folder not found)
#   model     - the model folder or the hardware cannot do it (broken weights, out of memory)
#   cancelled - someone asked to stop
#   crashed   - the worker process died; it was restarted
#   internal  - a bug: the message says where the log is
FAILURE_KINDS = ("bad_input", "model", "cancelled", "crashed", "internal")

# The request parameter that turns thinking mode (write a description first, then draw, edit or
# answer after it) on or off, per task (app/engine/pipeline.py DEFAULTS).
THINKING_PARAMS = {"generate": "thinking", "edit": "edit_thinking", "ask": "ask_thinking"}
MAX_REDRAWS = 8  # the most self-check redraws a job may ask for (each costs a whole drawing)


# ---- requests: GUI -> worker ----------------------------------------------------------------
@dataclass
class LoadModel:
    path: str
    placement: dict[str, Any] | None = None  # engine placement settings (experts on GPU/CPU)
    device: str = "cpu"
    dtype: str | None = None  # "float32", "bfloat16", ...; None = the engine's default


@dataclass
class Generate:
    job_id: str
    task: str  # "generate" | "edit" | "inpaint" | "ask" | "chat" (app/engine/jobs.py TASKS)
    prompt: str
    images: list[bytes] = field(default_factory=list)  # encoded PNG/JPEG files
    mask: bytes | None = None  # PNG, white = repaint
    params: dict[str, Any] = field(default_factory=dict)  # steps, cfg, seed, ...


@dataclass
class Cancel:
    job_id: str


@dataclass
class Shutdown:
    pass


Request = LoadModel | Generate | Cancel | Shutdown


# ---- events: worker -> GUI ------------------------------------------------------------------
@dataclass
class Hello:
    """First event of every worker process; the client checks the version before anything else."""

    protocol_version: int
    pid: int


@dataclass
class Loading:
    stage: str  # "engine" (importing torch and the engine), "weights" (reading the checkpoint)
    fraction: float  # 0..1 within the stage (weights: bytes read / bytes total)


@dataclass
class Ready:
    model_info: dict[str, Any]  # Pipeline.describe(): name, params, device, ...
    placement_summary: Any = None


@dataclass
class Started:
    """The worker began this job (it left the queue)."""

    job_id: str


@dataclass
class Step:
    """One denoising step (app/engine/jobs.py StepView plus the job id and the send time)."""

    job_id: str
    index: int
    total: int
    positions: np.ndarray  # int64 output positions committed this step
    tokens: np.ndarray  # int64 their token ids
    confidence: np.ndarray  # float32 per output position (NaN where not reported)
    revised: np.ndarray  # int64 output positions changed by self-correction
    preview: np.ndarray | None = None  # uint8 [h, w, 3] image tasks; None if coalesced away
    text: str | None = None  # partial answer (text tasks)
    expert_counts: np.ndarray | None = None  # int32 [moe_layers, E] tokens routed this step
    masked: np.ndarray | None = None  # bool per output position: still masked
    phase: str | None = None  # "thinking": text written before an image is drawn (§4.4)
    attempt: int = 0  # 0: the first drawing; 1, 2, ...: the self-check's redraws
    sent_at: float = 0.0  # time.time() in the worker when emitted (latency measurement)


@dataclass
class ExpertActivity:
    """Tokens routed to each expert so far in this job (cumulative, so a newer one replaces an
    older unseen one without losing anything)."""

    job_id: str
    counts: np.ndarray  # int64 [moe_layers, E]


@dataclass
class Done:
    job_id: str
    image_png: bytes | None = None  # image tasks: PNG with prompt/seed/... text chunks
    text: str | None = None  # text tasks
    thinking: str | None = None  # text to image in thinking mode: what the model wrote first
    tokens: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    warnings: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # resolved settings, seed included
    # The self-check's drawings (app/engine/jobs.py SelfCheck.as_dict): attempt, seed, passed,
    # score, read (what the model read in the picture); empty when it did not run.
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Failed:
    """A job (job_id set) or a model load (job_id None) did not complete."""

    job_id: str | None
    kind: str  # one of FAILURE_KINDS
    message: str  # says what happened and what to do
    model_loaded: bool | None = None  # load failures: is a model (the previous one) still loaded


@dataclass
class WorkerExited:
    """Made by the client, not the worker: the worker process ended (crash or shutdown)."""

    exitcode: int | None
    message: str


Event = Hello | Loading | Ready | Started | Step | ExpertActivity | Done | Failed | WorkerExited

TERMINAL = (Done, Failed)


def is_terminal(event: object) -> bool:
    """Done or Failed of a job: the last event of its stream."""
    return isinstance(event, TERMINAL) and getattr(event, "job_id", None) is not None
