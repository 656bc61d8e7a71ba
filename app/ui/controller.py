"""The glue between the view state and the worker: starts it, loads models, runs and stops jobs.

Every worker call is an asyncio task on the qasync loop, so the GUI thread only ever handles
small events (a step is a few hundred bytes plus a tiny preview). No widgets here: the window
calls `run()` / `stop()` and watches AppState's signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import sys
import uuid
from pathlib import Path

from PySide6.QtCore import QObject

from app.imageio import ImageError, decode_image, read_png_text
from app.protocol import (
    Done,
    ExpertActivity,
    Failed,
    Generate,
    Loading,
    Ready,
    Started,
    Step,
    WorkerExited,
)
from app.ui.persistence import HistoryEntry, Message, new_id
from app.ui.run_record import RunRecord
from app.ui.state import MODE_LABEL, MODE_TASK, TASK_MODE, AppState
from app.worker.client import LoadError, WorkerClient, WorkerError
from app.worker.jobstream import JobStream

LOAD_TIMEOUT = 600.0


class RunError(ValueError):
    """The request cannot be sent as it stands; the message says what to do."""


class Studio(QObject):
    def __init__(self, state: AppState, client: WorkerClient | None = None, *,
                 default_model: Path | str = "", engine: str | None = None) -> None:
        super().__init__()
        self.state = state
        self.default_model = str(default_model)
        if client is None:
            client = WorkerClient(engine=engine) if engine else WorkerClient()
        self.client = client
        client.on_event = self._on_worker_event
        self.owns_client = True
        self._tasks: set[asyncio.Task] = set()
        self._streams: dict[str, JobStream] = {}
        self.loaded_path: str | None = None
        self.override_model = ""  # `--model` on the command line: this session only

    # ---- asyncio plumbing ----------------------------------------------------------------
    def spawn(self, coro) -> asyncio.Task:
        """Run a coroutine on the loop; keeps a reference and reports unexpected errors."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            sys.stderr.write(f"unmask: background task failed: {exc!r}\n")
            self.state.warn(f"Internal error: {exc}", "error")

    # ---- worker and model ----------------------------------------------------------------
    def model_path(self) -> str:
        return self.override_model or self.state.settings.model_path or self.default_model

    async def start(self) -> bool:
        """Start the worker (if not yet) and load the model from the settings."""
        status = self.state.worker
        if self.client.state in ("new",):
            status.update(state="starting", message="Starting the worker…", progress=None)
            try:
                await self.client.start()
            except WorkerError as exc:
                status.update(state="dead", message=str(exc))
                self.state.warn(f"The worker could not start: {exc}", "error")
                return False
        loaded = self.client.model
        if loaded is not None and _same_folder(loaded.model_info.get("path"), self.model_path()):
            self.loaded_path = self.model_path()  # a shared client that has it already
            self._ready(loaded)
            return True
        return await self.load_model()

    async def load_model(self, path: str | None = None) -> bool:
        path = path or self.model_path()
        settings = self.state.settings
        self.state.worker.update(state="loading", stage="engine", progress=0.0,
                                 message=f"Loading {Path(path).name}…")
        try:
            ready = await self.client.load(path, settings.placement(), LOAD_TIMEOUT,
                                           device=settings.device, progress=self._on_loading)
        except LoadError as exc:
            self._load_failed(exc.failed.message)
            return False
        except WorkerError as exc:
            self._load_failed(str(exc))
            return False
        self.loaded_path = path
        self._ready(ready)
        return True

    def _load_failed(self, message: str) -> None:
        self.loaded_path = None
        self.state.worker.update(state="no_model", progress=None, model_info=None,
                                 message=message)
        self.state.warn(f"The model could not be loaded. {message}", "error")

    def _ready(self, ready: Ready) -> None:
        self.state.worker.update(state="busy" if self.client.running() else "ready",
                                 progress=None, model_info=dict(ready.model_info),
                                 placement=ready.placement_summary, message="")

    def _on_loading(self, event: Loading) -> None:
        self.state.worker.update(state="loading", stage=event.stage, progress=event.fraction)

    def _on_worker_event(self, event: object) -> None:
        status = self.state.worker
        if isinstance(event, Loading):
            self._on_loading(event)
        elif isinstance(event, Ready):
            self._ready(event)
        elif isinstance(event, Failed) and event.job_id is None and status.state != "no_model":
            status.update(state="no_model", progress=None, message=event.message)
        elif isinstance(event, WorkerExited):
            status.update(state="restarting", progress=None, restarts=status.restarts + 1,
                          message="Restarting the worker…")
            self.state.warn(f"The worker process stopped ({event.message}). It is being "
                            "restarted and the model reloaded; your work is safe.", "warning")

    async def shutdown(self) -> None:
        for stream in list(self._streams.values()):
            stream.cancel()
        if self.owns_client:
            await self.client.shutdown()
        for task in list(self._tasks):
            task.cancel()

    # ---- jobs ----------------------------------------------------------------------------
    def build_request(self, mode: str, prompt: str) -> tuple[list[bytes], bytes | None]:
        """The images and mask a mode sends; RunError says what is missing."""
        state, canvas = self.state, self.state.canvas
        prompt = prompt.strip()
        if not prompt:
            raise RunError("Type a prompt first.")
        images: list[bytes] = []
        mask = None
        if mode in ("edit", "inpaint"):
            if canvas.image is None:
                raise RunError(f"{MODE_LABEL[mode]} works on the canvas image: open, paste or "
                               "draw one first.")
            images = [canvas.image_png()]
        if mode == "inpaint":
            if not canvas.has_mask:
                raise RunError("Paint the area to repaint with the brush first.")
            mask = canvas.mask_png()
        if mode == "ask":
            images = [a.png for a in state.attachments.items]
            if not images and canvas.image is not None:
                images = [canvas.image_png()]
            if not images:
                raise RunError("Ask is about an image: attach one or put one on the canvas.")
        return images, mask

    def run(self, mode: str | None = None, prompt: str = "") -> RunRecord:
        """Send the prompt in `mode` (default: the current mode). Raises RunError."""
        mode = mode or self.state.mode
        images, mask = self.build_request(mode, prompt)
        data = self.state.data
        names = [data.images.put(png, "input") for png in images]
        mask_name = data.images.put(mask, "mask") if mask is not None else ""
        conversations = self.state.conversations
        asked = {"mask": mask_name} if mask_name else {}
        conversations.append(Message("user", prompt.strip(), mode, names, asked))
        params = self.state.settings.params()
        conv_id, index = conversations.append(
            Message("assistant", "", mode, [], params, status="running"))
        self.state.attachments.clear()
        return self._submit(MODE_TASK[mode], prompt.strip(), images, mask, params,
                            (conv_id, index), names, mask_name)

    def regenerate(self, conv_id: str, index: int) -> RunRecord | None:
        """Run an assistant message's request again with a new seed: another sample."""
        conversation = self.state.conversations.get(conv_id)
        if conversation is None or index < 1 or index >= len(conversation.messages):
            return None
        asked = conversation.messages[index - 1]
        images = [png for png in map(self.state.data.images.get, asked.images) if png]
        params = {**(conversation.messages[index].params or self.state.settings.params()),
                  "seed": None}
        task = MODE_TASK.get(asked.mode, "chat")
        mask_name = asked.params.get("mask", "")
        mask = self.state.data.images.get(mask_name) if mask_name else None
        if task == "inpaint" and mask is None:
            self.state.warn("The mask of that request is gone; paint it again.")
            return None
        self.state.conversations.update(conv_id, index, text="", images=[], status="running",
                                        params=params)
        return self._submit(task, asked.text, images, mask, params, (conv_id, index),
                            asked.images, mask_name)

    def rerun(self, entry: HistoryEntry) -> RunRecord:
        """Exactly the history entry's request again (same seed: the same result)."""
        images = [png for png in map(self.state.data.images.get, entry.inputs) if png]
        mask = self.state.data.images.get(entry.mask) if entry.mask else None
        mode = TASK_MODE.get(entry.task, "chat")
        conversations = self.state.conversations
        asked = {"mask": entry.mask} if entry.mask else {}
        conversations.append(Message("user", entry.prompt, mode, list(entry.inputs), asked))
        target = conversations.append(
            Message("assistant", "", mode, [], dict(entry.params), status="running"))
        return self._submit(entry.task, entry.prompt, images, mask, dict(entry.params), target,
                            list(entry.inputs), entry.mask)

    def _submit(self, task, prompt, images, mask, params, target, input_names, mask_name):
        job_id = f"job-{uuid.uuid4().hex[:10]}"
        record = RunRecord(job_id, task, prompt, params)
        record.inputs, record.mask_name = input_names, mask_name
        record.target = target
        self.state.runs.append(record)
        stream = self.client.submit(Generate(job_id, task, prompt, images, mask, params))
        self._streams[job_id] = stream
        self.state.worker.update(queued=len(self.client.queued()))
        self.state.run_started.emit(record)
        self.spawn(self._follow(stream, record))
        return record

    def stop(self) -> bool:
        """Esc: stop the running job and drop the queued ones."""
        stopped = False
        for stream in list(self._streams.values()):
            stopped = stream.cancel() or stopped
        return stopped

    @property
    def busy(self) -> bool:
        return bool(self._streams)

    async def _follow(self, stream: JobStream, record: RunRecord) -> None:
        conv_id, index = record.target
        try:
            async for event in stream:
                if isinstance(event, Started):
                    record.start()
                    self.state.worker.update(state="busy", queued=len(self.client.queued()))
                elif isinstance(event, Step):
                    record.add_step(event)
                    if event.text is not None:
                        text = thinking_line(event.text) if event.phase == "thinking" \
                            else with_thinking(record.thinking, event.text)
                        self.state.conversations.update(conv_id, index, save=False, text=text)
                    self.state.worker.update(steps_per_s=record.steps_per_second())
                    self.state.run_updated.emit(record)
                elif isinstance(event, ExpertActivity):
                    record.activity = event.counts
                elif isinstance(event, (Done, Failed)):
                    record.finish(event)
        finally:
            self._streams.pop(record.job_id, None)
            if not record.finished:  # the follower itself was cancelled (app closing)
                record.finish(Failed(record.job_id, "cancelled", "The app is closing."))
        self._finished(record)

    def _finished(self, record: RunRecord) -> None:
        conv_id, index = record.target
        state = self.state
        if self.state.worker.state == "busy" and not self._streams:
            self.state.worker.update(state="ready", queued=0)
        if record.state == "done":
            self._store_result(record, conv_id, index)
        else:
            error = record.error
            assert error is not None
            text = {"cancelled": "Stopped."}.get(error.kind, error.message)
            partial = record.text_at(len(record.steps) - 1) if record.steps else ""
            state.conversations.update(conv_id, index, status=record.state,
                                       text=f"{partial}\n\n[{text}]" if partial else f"[{text}]")
            if error.kind == "cancelled":
                state.warn("Stopped.", "info")
            elif error.kind == "crashed":
                state.warn(error.message, "warning")
            else:
                state.warn(error.message, "error")
        if record.activity is not None or record.steps:
            state.add_session_experts(record.kind, record.expert_counts(None, "run"))
        for warning in record.warnings:
            state.warn(warning, "info")
        state.run_finished.emit(record)

    def _store_result(self, record: RunRecord, conv_id: str, index: int) -> None:
        state = self.state
        entry = HistoryEntry(new_id(), record.task, record.prompt,
                             {**record.params, **record.result_params},
                             model=Path(self.loaded_path or self.model_path()).name,
                             inputs=list(record.inputs), mask=record.mask_name)
        if record.image_png is not None:
            entry.image = state.data.images.put(record.image_png, record.task)
            entry.text = "\n\n".join(line for line in (
                thinking_line(record.thinking) if record.thinking else "",
                record.redraws_note()) if line)
            state.conversations.update(conv_id, index, images=[entry.image], status="done",
                                       text=entry.text, params=entry.params)
            with contextlib.suppress(ImageError):
                image = decode_image(record.image_png, name="the result")
                meta = read_png_text(record.image_png)
                meta["mode"] = TASK_MODE.get(record.task, record.task)
                state.canvas.set_image(image, meta, name=entry.image)
        else:
            entry.text = with_thinking(record.thinking, record.text or "")
            state.conversations.update(conv_id, index, text=entry.text, status="done",
                                       params=entry.params)
        record.history_id = entry.id
        state.history.add(entry)


def thinking_line(thinking: str) -> str:
    """How thinking (thinking mode, llada2_uni.md §4.4, and our extensions to edits and
    questions) shows in the chat."""
    return f"Thinking: {thinking}"


def with_thinking(thinking: str | None, answer: str, rich: bool = False) -> str:
    """An answer as the chat shows it: after the thinking that led to it, if any. rich: the
    answer is Qt rich text already (a step of the replay), so the thinking is escaped into it."""
    if not thinking:
        return answer
    if rich:
        return f"{html.escape(thinking_line(thinking))}<br><br>{answer}"
    return f"{thinking_line(thinking)}\n\n{answer}"


def _same_folder(a, b) -> bool:
    try:
        return a is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
