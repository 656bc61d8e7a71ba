"""The GUI's handle on the worker process: an asyncio API (works under qasync; no Qt, no torch).

    client = WorkerClient()
    await client.start(timeout=60)
    ready = await client.load("resources/models/shapes-demo", placement=None, timeout=600)
    stream = client.submit(Generate("job-1", "generate", "a red circle"))
    async for event in stream:          # Started, Step..., ExpertActivity..., then Done | Failed
        ...
    await client.shutdown()

The client holds the job queue and sends the worker one job at a time, so reorder and remove are
local list operations and a crash loses at most the running job. When the worker dies (killed,
segfault, out of memory) the running job ends with Failed(kind="crashed"), a new worker is
spawned, the last model is reloaded and the queue carries on; after `max_crashes` deaths within
`crash_window` seconds it stops retrying and fails what is queued instead of crash-looping.
Worker-level events (Loading, Ready, Failed of a load, WorkerExited) also go to `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from app.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Done,
    ExpertActivity,
    Failed,
    Generate,
    Hello,
    Loading,
    LoadModel,
    Ready,
    Shutdown,
    Started,
    Step,
    WorkerExited,
)
from app.worker.jobstream import JobQueue, JobStream
from app.worker.process import DEFAULT_TARGET, WorkerProcess

DEFAULT_ENGINE = "app.engine.pipeline:Pipeline"


class WorkerError(RuntimeError):
    """The worker could not be started, reached or kept alive; the message says why."""


class LoadError(WorkerError):
    """The worker refused or failed a model load (the Failed event is attached)."""

    def __init__(self, failed: Failed):
        super().__init__(failed.message)
        self.failed = failed
        self.kind = failed.kind


@dataclass(eq=False)
class _LoadOp:
    request: LoadModel
    future: asyncio.Future[Ready] | None  # None: the automatic reload after a crash
    progress: Callable[[Loading], None] | None = None


class WorkerClient:
    def __init__(
        self,
        *,
        engine: str = DEFAULT_ENGINE,
        on_event: Callable[[object], None] | None = None,
        start_timeout: float = 60.0,
        max_crashes: int = 3,
        crash_window: float = 60.0,
        prewarm: bool = True,
        target: str = DEFAULT_TARGET,
    ):
        self.engine, self.target, self.prewarm = engine, target, prewarm
        self.on_event = on_event
        self.start_timeout, self.max_crashes, self.crash_window = start_timeout, max_crashes, crash_window
        self.state = "new"  # new | starting | ready | restarting | dead | closed
        self.hello: Hello | None = None
        self.model: Ready | None = None  # what the worker has loaded now
        self.stats = {"restarts": 0, "stale_events": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: WorkerProcess | None = None
        self._gen = 0  # worker incarnation; events of older ones are dropped
        self._hello_future: asyncio.Future[Hello] | None = None
        self._queue = JobQueue()
        self._loads: deque[_LoadOp] = deque()
        self._jobs: dict[str, JobStream] = {}  # every unfinished job, queued or running
        self._current: JobStream | _LoadOp | None = None  # what the worker is doing
        self._model_request: LoadModel | None = None  # reloaded after a crash
        self._crashes: deque[float] = deque()
        self._dead_reason = ""
        self._restart_task: asyncio.Task[None] | None = None
        self._closing = False

    # ---- lifetime ------------------------------------------------------------------------
    @property
    def worker_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self, timeout: float | None = None) -> Hello:
        """Spawn the worker and check its protocol version; WorkerError on failure or timeout."""
        if self.state in ("starting", "ready", "restarting") and self.hello is not None:
            return self.hello
        if self.state == "closed":
            raise WorkerError("this client was shut down; make a new one")
        self._loop = asyncio.get_running_loop()
        self._crashes.clear()
        self.state = "starting"
        try:
            await self._spawn(self.start_timeout if timeout is None else timeout)
        except WorkerError:
            self.state = "new"
            raise
        self.state = "ready"
        self._pump()
        assert self.hello is not None
        return self.hello

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker (cancelling its job) and end every stream; kills it after `timeout`."""
        if self.state == "closed":
            return
        self._closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        self._finish_waiting("cancelled", "The app is closing.")
        proc = self._proc
        if proc is not None:
            proc.send(Shutdown())
            deadline = time.monotonic() + timeout
            while proc.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            proc.kill()
            # Let the reader hand over what the worker sent last (the running job's Failed).
            while not proc.reader_done.is_set() and time.monotonic() < deadline + 2.0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        self._finish_all("cancelled", "The app is closing.")
        self.state = "closed"
        self._gen += 1
        self._proc = None

    def close(self, timeout: float = 2.0) -> None:
        """Synchronous shutdown for exit paths without a running loop (atexit, aboutToQuit)."""
        proc, self._proc = self._proc, None
        self.state, self._closing = "closed", True
        self._gen += 1
        if proc is not None:
            proc.send(Shutdown())
            proc.join(timeout)
            proc.kill()
            proc.join(1.0)
        with contextlib.suppress(RuntimeError):  # waiters on a loop that is already closed
            self._finish_all("cancelled", "The app is closing.")

    # ---- models --------------------------------------------------------------------------
    async def load(
        self,
        path: str,
        placement: dict | None = None,
        timeout: float = 600.0,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        progress: Callable[[Loading], None] | None = None,
    ) -> Ready:
        """Load a model folder (after the running job, before queued ones). Returns Ready; raises
        LoadError with the worker's message, or WorkerError on timeout (counted from now)."""
        self._require_running()
        assert self._loop is not None
        op = _LoadOp(LoadModel(str(path), placement, device, dtype), self._loop.create_future(),
                     progress)
        self._loads.append(op)
        self._pump()
        assert op.future is not None
        try:
            return await asyncio.wait_for(asyncio.shield(op.future), timeout)
        except asyncio.TimeoutError:
            op.future.cancel()
            if op in self._loads:
                self._loads.remove(op)
                raise WorkerError(f"the worker stayed busy for {timeout:g} s and never started "
                                  f"loading {path}") from None
            if self._current is op and self._proc is not None:
                # Stuck inside the engine's load: only a new process gets us back.
                self._model_request = None
                self.state = "restarting"  # until the exit is seen and a new worker says Hello
                self._proc.kill()
            raise WorkerError(f"loading {path} took longer than {timeout:g} s; the worker was "
                              "restarted without a model") from None

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, request: Generate) -> JobStream:
        """Queue a job; iterate the returned stream for its events (ends with Done or Failed)."""
        if not isinstance(request, Generate):
            raise TypeError(f"submit takes a Generate request, not {type(request).__name__}")
        if request.job_id in self._jobs:
            raise ValueError(f"job id {request.job_id!r} is already queued or running")
        stream = JobStream(request, self.cancel)
        if self.state in ("dead", "closed"):
            reason = self._dead_reason if self.state == "dead" else "The worker was shut down."
            stream._push(Failed(request.job_id, "crashed" if self.state == "dead" else "cancelled",
                                reason))
            return stream
        self._jobs[request.job_id] = stream
        self._queue.append(stream)
        self._pump()
        return stream

    def cancel(self, job_id: str) -> bool:
        """Queued: removed now (its stream ends with Failed cancelled). Running: the worker stops
        it before the next step. False if the job is unknown or already finished."""
        stream = self._jobs.get(job_id)
        if stream is None:
            return False
        if self.remove(job_id):
            return True
        if self._current is stream and self._proc is not None:
            if not stream.cancel_requested:
                stream.cancel_requested = True
                self._proc.send(Cancel(job_id))
            return True
        return False

    def remove(self, job_id: str) -> bool:
        """Take a queued (not running) job out of the queue; its stream ends cancelled."""
        stream = self._queue.take(job_id)
        if stream is None:
            return False
        del self._jobs[job_id]
        stream._push(Failed(job_id, "cancelled", "Cancelled before it started."))
        return True

    def queued(self) -> list[str]:
        return self._queue.ids()

    def running(self) -> str | None:
        return self._current.job_id if isinstance(self._current, JobStream) else None

    def move(self, job_id: str, index: int) -> bool:
        """Move a queued job to `index` in the queue (0 = next to run)."""
        return self._queue.move(job_id, index)

    def reorder(self, job_ids: Sequence[str]) -> list[str]:
        """Queued jobs named in `job_ids` first, in that order, then the rest as they were.
        Names that are not queued (any more) are ignored. Returns the new queue."""
        return self._queue.reorder(list(job_ids))

    # ---- internals -----------------------------------------------------------------------
    def _require_running(self) -> None:
        if self.state == "dead":
            raise WorkerError(self._dead_reason)
        if self.state in ("new", "closed"):
            raise WorkerError("the worker is not running: call start() first")

    async def _spawn(self, timeout: float) -> None:
        assert self._loop is not None
        self._gen += 1
        proc = WorkerProcess(self._loop, partial(self._deliver, self._gen), engine=self.engine,
                             target=self.target, prewarm=self.prewarm)
        self._proc = proc
        self._hello_future = self._loop.create_future()
        try:
            proc.start()
        except Exception as exc:
            self._proc = None
            raise WorkerError(f"cannot start the worker process ({exc})") from exc
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._hello_future), timeout)
        except (asyncio.TimeoutError, WorkerError) as exc:
            self._abandon(proc)
            if isinstance(exc, WorkerError):
                raise
            raise WorkerError(f"the worker process did not start within {timeout:g} s") from None
        finally:
            self._hello_future = None
        if hello.protocol_version != PROTOCOL_VERSION:
            self._abandon(proc)
            raise WorkerError(
                f"the worker speaks protocol version {hello.protocol_version} but this app "
                f"speaks {PROTOCOL_VERSION}: the worker comes from another installation; "
                "reinstall Unmask Studio"
            )
        self.hello = hello

    def _abandon(self, proc: WorkerProcess) -> None:
        self._gen += 1  # its remaining events, its exit included, are not ours to handle
        proc.kill()
        if self._proc is proc:
            self._proc = None

    def _deliver(self, gen: int, events: list[object]) -> None:
        for event in events:
            if gen != self._gen:
                self.stats["stale_events"] += 1
                continue
            self._handle(event)

    def _notify(self, event: object) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception as exc:  # a GUI callback bug must not wedge the client
            sys.stderr.write(f"unmask: on_event callback failed: {exc!r}\n")

    def _handle(self, event: object) -> None:
        if isinstance(event, Hello):
            if self._hello_future is not None and not self._hello_future.done():
                self._hello_future.set_result(event)
        elif isinstance(event, (Started, Step, ExpertActivity)):
            stream = self._jobs.get(event.job_id)
            if stream is not None:
                stream._push(event)
        elif isinstance(event, (Done, Failed)) and event.job_id is not None:
            stream = self._jobs.pop(event.job_id, None)
            if stream is not None:
                stream._push(event)
            if self._current is stream and stream is not None:
                self._current = None
                self._pump()
        elif isinstance(event, (Loading, Ready, Failed)):
            self._handle_load_event(event)
        elif isinstance(event, WorkerExited):
            self._on_exit(event)

    def _handle_load_event(self, event: Loading | Ready | Failed) -> None:
        op = self._current if isinstance(self._current, _LoadOp) else None
        if isinstance(event, Loading):
            if op is not None and op.progress is not None:
                op.progress(event)
        elif op is not None:
            self._current = None
            if isinstance(event, Ready):
                self.model, self._model_request = event, op.request
                if op.future is not None and not op.future.done():
                    op.future.set_result(event)
            else:
                if not event.model_loaded:
                    self.model = self._model_request = None
                if op.future is not None and not op.future.done():
                    op.future.set_exception(LoadError(event))
            self._pump()
        self._notify(event)

    def _pump(self) -> None:
        """Send the worker its next piece of work: loads first, then the queue head."""
        if self.state != "ready" or self._current is not None or self._proc is None:
            return
        if self._loads:
            op = self._loads.popleft()
            self._current = op
            self._proc.send(op.request)
        elif self._queue:
            stream = self._queue.pop_next()
            self._current = stream
            self._proc.send(stream.request)  # a dead pipe shows up as WorkerExited next

    def _on_exit(self, event: WorkerExited) -> None:
        self._gen += 1
        self._proc = None
        if self._hello_future is not None and not self._hello_future.done():
            self._hello_future.set_exception(WorkerError(
                f"the worker process ended before it was ready: {event.message}"))
            return  # _spawn reports it
        if self._closing or self.state == "closed":
            return
        self._notify(event)
        current, self._current = self._current, None
        reload = self._model_request
        if isinstance(current, JobStream):
            self._jobs.pop(current.job_id, None)
            again = " and the model is being reloaded" if reload is not None else ""
            current._push(Failed(current.job_id, "crashed", (
                f"The worker process stopped while running this job: {event.message}. It has "
                f"been restarted{again}; run the job again to retry.")))
        elif isinstance(current, _LoadOp):
            # The load itself is the likely culprit (too big for memory): do not retry it.
            reload = None
            if current.future is not None and not current.future.done():
                current.future.set_exception(LoadError(Failed(
                    None, "crashed", f"The worker process stopped while loading "
                    f"{current.request.path}: {event.message}. The model may not fit in memory.",
                    model_loaded=False)))
        self.model = self._model_request = None
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.crash_window:
            self._crashes.popleft()
        if len(self._crashes) >= self.max_crashes:
            self.state = "dead"
            self._dead_reason = (
                f"The worker process stopped {len(self._crashes)} times within "
                f"{self.crash_window:g} s (last time: {event.message}); it was not restarted.")
            self._finish_all("crashed", self._dead_reason)
            return
        self.state = "restarting"
        assert self._loop is not None
        self._restart_task = self._loop.create_task(self._restart(reload))

    async def _restart(self, reload: LoadModel | None) -> None:
        try:
            await self._spawn(self.start_timeout)
        except WorkerError as exc:
            self.state = "dead"
            self._dead_reason = f"The worker process could not be restarted: {exc}"
            self._finish_all("crashed", self._dead_reason)
            self._notify(WorkerExited(None, self._dead_reason))
            return
        self.stats["restarts"] += 1
        if reload is not None:
            self._loads.appendleft(_LoadOp(reload, None))
        self.state = "ready"
        self._pump()

    def _finish_waiting(self, kind: str, message: str) -> None:
        """End queued jobs and waiting loads (not what the worker is doing)."""
        for stream in self._queue.clear():
            self._jobs.pop(stream.job_id, None)
            stream._push(Failed(stream.job_id, kind, message))
        while self._loads:
            op = self._loads.popleft()
            if op.future is not None and not op.future.done():
                op.future.set_exception(WorkerError(message))

    def _finish_all(self, kind: str, message: str) -> None:
        self._finish_waiting(kind, message)
        current, self._current = self._current, None
        if isinstance(current, _LoadOp) and current.future is not None and not current.future.done():
            current.future.set_exception(WorkerError(message))
        for stream in list(self._jobs.values()):
            stream._push(Failed(stream.job_id, kind, message))
        self._jobs.clear()
