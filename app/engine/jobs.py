"""Plain-data records that cross the engine boundary: a job in, step views and a result out.

No torch here on purpose: the worker turns these into protocol events without conversions, and
tests can build them by hand. Arrays are numpy; images are uint8 [H, W, 3].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TASKS = ("generate", "edit", "inpaint", "ask", "chat")


@dataclass
class JobSpec:
    """One request to the engine.

    task: "generate" (text to image), "edit" (instruction on images[0]), "inpaint" (mask over
    images[0] + prompt), "ask" (question about images), "chat" (text only).
    params: sampling settings; unknown keys are ignored, missing ones take the model's defaults:
    steps, cfg, seed, temperature, threshold, block_length, gen_length, remask_threshold,
    edit_threshold.
    """

    task: str
    prompt: str
    images: list[np.ndarray] = field(default_factory=list)
    mask: np.ndarray | None = None  # bool [H, W], True = repaint
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepView:
    """One denoising step as the app shows it."""

    index: int
    total: int
    positions: np.ndarray  # int64: committed this step, as indices into the output (grid cell
    #                        index for images, token index of the answer for text)
    tokens: np.ndarray  # int64: their token ids
    confidence: np.ndarray  # float32: per output position (grid h*w for images; answer tokens)
    revised: np.ndarray  # int64: output positions changed by self-correction
    preview: np.ndarray | None = None  # uint8 [h, w, 3] code-palette preview (image tasks)
    text: str | None = None  # partial answer with placeholders for masked tokens (text tasks)
    expert_counts: np.ndarray | None = None  # int64 [moe_layers, E]
    masked: np.ndarray | None = None  # bool per output position: still masked after this step
    phase: str | None = None  # "thinking": text written before drawing or answering (§4.4)
    attempt: int = 0  # the self-check's redraws count up from 0 (the first drawing)


@dataclass(frozen=True)
class SelfCheck:
    """One drawing the self-check read back (app/engine/self_check.py)."""

    attempt: int  # 0: the first drawing, then each redraw
    seed: int  # the seed it was drawn with (the job's seed + attempt)
    passed: bool  # the model read its picture back as the text it was drawn from
    score: float  # mean log probability of that text, read from the picture
    read: str  # what the model read there (its description of the picture)
    kept: bool = False  # the job's result is this drawing

    def as_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "seed": self.seed, "passed": self.passed,
                "score": round(self.score, 4), "read": self.read, "kept": self.kept}


@dataclass
class JobResult:
    image: np.ndarray | None = None  # uint8 [H, W, 3] for image tasks
    text: str | None = None  # for text tasks
    thinking: str | None = None  # thinking mode (§4.4 and our extensions): what it wrote first
    tokens: np.ndarray | None = None  # the output tokens (grid codes or answer ids)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "total", "decode", ...
    params: dict[str, Any] = field(default_factory=dict)  # resolved settings, seed included
    checks: list[SelfCheck] = field(default_factory=list)  # the self-check, one per drawing


class JobError(ValueError):
    """A job cannot run as asked (bad image, unknown task...). `kind` is a short machine tag."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
