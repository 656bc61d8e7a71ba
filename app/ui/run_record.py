"""Everything one job produced, step by step: what the visualizer, timeline and expert panel show.

Plain Python + numpy (no Qt), fed with protocol events. The worker may coalesce previews away when
the GUI falls behind (app/worker/buffer.py): such steps keep their positions, confidence and masked
cells but not their picture, so a missing frame is rebuilt from the next preview that did arrive
(cells commit once, so a later picture shows the same colours) with the still-masked cells grey.
The last step's preview is never coalesced away, so every finished run can show every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.protocol import Done, Failed, Step

MASK_RGB = np.array([96, 96, 96], dtype=np.uint8)  # app/engine/pipeline.py PREVIEW_MASK_RGB
MASK_PLACEHOLDER = "▯"
TEXT_TASKS = ("ask", "chat")


def task_kind(task: str) -> str:
    return "text" if task in TEXT_TASKS else "image"


@dataclass
class StepRecord:
    index: int
    total: int
    positions: np.ndarray
    confidence: np.ndarray
    revised: np.ndarray
    masked: np.ndarray | None
    preview: np.ndarray | None
    text: str | None
    expert_counts: np.ndarray | None
    arrived: float

    @classmethod
    def from_event(cls, event: Step) -> StepRecord:
        return cls(
            index=event.index, total=event.total,
            positions=np.asarray(event.positions, dtype=np.int64).reshape(-1),
            confidence=np.asarray(event.confidence, dtype=np.float32).reshape(-1),
            revised=np.asarray(event.revised, dtype=np.int64).reshape(-1),
            masked=None if event.masked is None else np.asarray(event.masked, bool).reshape(-1),
            preview=None if event.preview is None else np.asarray(event.preview, np.uint8),
            text=event.text,
            expert_counts=None if event.expert_counts is None else np.asarray(event.expert_counts),
            arrived=time.monotonic(),
        )


class RunRecord:
    def __init__(self, job_id: str, task: str, prompt: str, params: dict[str, Any]):
        self.job_id, self.task, self.prompt = job_id, task, prompt
        self.params = dict(params)  # as requested (seed may be None = random)
        self.kind = task_kind(task)
        self.state = "queued"  # queued | running | done | failed | cancelled
        self.steps: list[StepRecord] = []
        self.grid: tuple[int, int] | None = None  # token grid (h, w) of image tasks
        self.activity: np.ndarray | None = None  # cumulative expert counts (ExpertActivity)
        self.image_png: bytes | None = None
        self.text: str | None = None
        self.thinking: str | None = None  # thinking mode: the text written before drawing
        self.result_params: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.error: Failed | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        # Where the result goes and how to redo it (set by the controller).
        self.inputs: list[str] = []  # input image files in the user's images folder
        self.mask_name = ""
        self.target: tuple[str, int] = ("", -1)  # conversation id, message index
        self.history_id = ""
        self._orders: list[np.ndarray] = []  # per step: step index of each cell's commit, -1
        self._revisions: list[np.ndarray] = []  # per step: last step that revised each cell, -1
        # The self-check's drawings (protocol Done.checks) and, per attempt, its steps and maps:
        # `steps` and the maps are the current drawing's, then (on finish) the kept one's.
        self.checks: list[dict[str, Any]] = []
        self.attempt = 0  # the drawing `steps` holds
        self.kept_attempt = 0  # the drawing the result is
        self.drawings: dict[int, tuple[list[StepRecord], list, list]] = {}  # the others

    def __repr__(self) -> str:
        return f"<RunRecord {self.job_id} {self.task} {self.state} {len(self.steps)} steps>"

    # ---- feeding -------------------------------------------------------------------------
    def start(self) -> None:
        self.state, self.started_at = "running", time.monotonic()

    def add_step(self, event: Step) -> StepRecord:
        """A step of the output; a thinking step (phase "thinking") only updates `thinking`,
        so the step timeline and its maps stay the picture's."""
        if self.state == "queued":
            self.start()
        record = StepRecord.from_event(event)
        if event.phase == "thinking":
            self.thinking = event.text
            return record
        if event.attempt != self.attempt:  # a self-check redraw starts: a fresh timeline
            self.drawings[self.attempt] = (self.steps, self._orders, self._revisions)
            self.steps, self._orders, self._revisions = [], [], []
            self.attempt = event.attempt
        if record.preview is not None and self.grid is None:
            self.grid = record.preview.shape[:2]
        self.steps.append(record)
        self._extend_maps(record)
        return record

    def finish(self, event: Done | Failed) -> None:
        self.finished_at = time.monotonic()
        if isinstance(event, Done):
            self.state = "done"
            self.image_png, self.text = event.image_png, event.text
            self.thinking = event.thinking if event.thinking is not None else self.thinking
            self.result_params = dict(event.params)
            self.timings, self.warnings = dict(event.timings), list(event.warnings)
            self.checks = list(event.checks)
            self._show_kept_drawing()
        else:
            self.state = "cancelled" if event.kind == "cancelled" else "failed"
            self.error = event

    def _show_kept_drawing(self) -> None:
        """The timeline shows the drawing the self-check kept (marked "kept" by the engine),
        which need not be the last."""
        kept = [int(c["attempt"]) for c in self.checks if c.get("kept")]
        self.kept_attempt = kept[0] if kept else self.attempt
        self.show_drawing(self.kept_attempt)

    def show_drawing(self, attempt: int) -> None:
        """Make `steps` and the maps those of drawing `attempt` (one the run streamed)."""
        if attempt == self.attempt or attempt not in self.drawings:
            return
        self.drawings[self.attempt] = (self.steps, self._orders, self._revisions)
        self.steps, self._orders, self._revisions = self.drawings.pop(attempt)
        self.attempt = attempt

    def drawing_choices(self) -> list[tuple[int, str, str]]:
        """(attempt, label, what the model read there) of each drawing the self-check made,
        for the timeline's picker."""
        choices = []
        for check in self.checks:
            attempt = int(check["attempt"])
            if attempt != self.attempt and attempt not in self.drawings:
                continue  # its steps never arrived
            verdict = "kept" if attempt == self.kept_attempt else "redrawn"
            choices.append((attempt, f"drawing {attempt + 1} · {verdict}",
                            f"read as “{check.get('read', '')}”"))
        return choices

    def redraws_note(self) -> str:
        """One line on the self-check's redraws, '' when there were none."""
        if len(self.checks) < 2:
            return ""
        first = self.checks[0].get("read", "")
        if any(c.get("passed") for c in self.checks):
            return (f"Self-check: drawn {len(self.checks)} times; the model read the first "
                    f"picture as “{first}”.")
        return (f"Self-check: drawn {len(self.checks)} times, never read back as meant; kept "
                f"drawing {self.kept_attempt + 1}.")

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def seed(self) -> int | None:
        seed = self.result_params.get("seed", self.params.get("seed"))
        return None if seed is None else int(seed)

    def steps_per_second(self) -> float | None:
        if len(self.steps) < 2:
            return None
        span = self.steps[-1].arrived - self.steps[0].arrived
        return (len(self.steps) - 1) / span if span > 0 else None

    # ---- per-step views ------------------------------------------------------------------
    def _cells(self, record: StepRecord) -> int:
        if self.grid is not None:
            return self.grid[0] * self.grid[1]
        if record.masked is not None:
            return record.masked.size
        return record.confidence.size

    def _extend_maps(self, record: StepRecord) -> None:
        n = self._cells(record)
        order = self._orders[-1].copy() if self._orders else np.full(n, -1, np.int64)
        revised = self._revisions[-1].copy() if self._revisions else np.full(n, -1, np.int64)
        if order.size != n:  # the grid became known after text-sized maps: start over
            order, revised = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        i = len(self.steps) - 1
        # A revised cell was re-decided at this step: replaced (committed now) or re-masked
        # (the masked cells are cleared below and get their order when committed again).
        revised[record.revised[(record.revised >= 0) & (record.revised < n)]] = i
        order[record.revised[(record.revised >= 0) & (record.revised < n)]] = i
        order[record.positions[(record.positions >= 0) & (record.positions < n)]] = i
        if record.masked is not None and record.masked.size == n:
            order[record.masked] = -1
        self._orders.append(order)
        self._revisions.append(revised)

    def masked_at(self, i: int) -> np.ndarray | None:
        """bool per cell/token: still masked after step i."""
        record = self.steps[i]
        if record.masked is not None:
            return record.masked
        if record.preview is not None:
            return np.all(record.preview.reshape(-1, 3) == MASK_RGB, axis=1)
        return self._orders[i] < 0

    def commit_order(self, i: int) -> np.ndarray:
        """Per cell: the step (0-based) at which it was committed, as of step i; -1 = masked."""
        return self._orders[i]

    def revised_upto(self, i: int) -> np.ndarray:
        """Per cell: the last step <= i that revised it (self-correction); -1 = never."""
        return self._revisions[i]

    def confidence_at(self, i: int) -> np.ndarray:
        return self.steps[i].confidence

    def frame(self, i: int) -> np.ndarray | None:
        """The code-palette preview after step i, uint8 [h, w, 3] (None for text runs)."""
        if self.grid is None or not self.steps:
            return None
        record = self.steps[i]
        if record.preview is not None:
            return record.preview
        source = next((s.preview for s in self.steps[i + 1:] if s.preview is not None), None)
        if source is None:
            source = next(s.preview for s in reversed(self.steps[:i]) if s.preview is not None)
        out = source.reshape(-1, 3).copy()
        masked = self.masked_at(i)
        if masked is not None and masked.size == out.shape[0]:
            out[masked] = MASK_RGB
        return out.reshape(*self.grid, 3)

    def text_at(self, i: int) -> str:
        for record in reversed(self.steps[: i + 1]):
            if record.text is not None:
                return record.text
        return ""

    def expert_counts(self, i: int | None, scope: str) -> np.ndarray | None:
        """scope "step": routing of step i; "run": summed over steps 0..i (whole run if None)."""
        if not self.steps:
            return self.activity
        i = len(self.steps) - 1 if i is None else i
        if scope == "step":
            return self.steps[i].expert_counts
        counts = [s.expert_counts for s in self.steps[: i + 1] if s.expert_counts is not None]
        if counts:
            return np.sum(np.stack(counts).astype(np.int64), axis=0)
        return self.activity

    def committed_per_step(self) -> list[int]:
        return [int(s.positions.size) for s in self.steps]


# ---- export --------------------------------------------------------------------------------
def upscale(frame: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour to about `size` pixels wide (a whole factor, so cells stay square)."""
    factor = max(1, size // max(frame.shape[:2]))
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def export_frames(run: RunRecord, size: int = 256) -> list[np.ndarray]:
    """Every step's picture, then the final decode, all at the same size."""
    from PIL import Image

    if run.grid is None:
        raise ValueError("only image runs have pictures to export")
    frames = [upscale(run.frame(i), size) for i in range(len(run.steps))]
    if run.image_png is not None:
        from app.imageio import decode_image

        final = decode_image(run.image_png)
        if frames:
            h, w = frames[0].shape[:2]
            final = np.asarray(Image.fromarray(final).resize((w, h), Image.NEAREST))
        frames.append(final)
    return frames


def export_gif(run: RunRecord, path: Path, fps: float = 8.0, size: int = 256) -> int:
    from PIL import Image

    frames = export_frames(run, size)
    images = [Image.fromarray(f) for f in frames]
    durations = [int(1000 / max(0.5, fps))] * (len(images) - 1) + [1500]  # hold the result
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=durations, loop=0, optimize=False)
    return len(images)


def export_png_frames(run: RunRecord, folder: Path, size: int = 256) -> int:
    from app.imageio import encode_png

    frames = export_frames(run, size)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        name = f"step_{i:03d}.png" if i < len(run.steps) else "final.png"
        (folder / name).write_bytes(encode_png(frame, {"prompt": run.prompt, "step": str(i)}))
    return len(frames)
