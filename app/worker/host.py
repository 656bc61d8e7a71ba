"""The worker process: loads a model folder and runs one job at a time (../shared/DESIGN.md §1).

Threads, and why each exists:
- main: loads models and runs jobs (the engine is not thread-safe and holds the accelerator);
- requests: blocks on the request pipe so a Cancel lands while a job computes; the pipe closing
  means the GUI process is gone;
- outbox: sends events, so a GUI that reads slowly never stalls the denoising loop (unsent
  previews are coalesced meanwhile, app/worker/buffer.py);
- parent watch: waits on the parent's sentinel and exits at once if the GUI dies, so no worker
  is left holding gigabytes of weights with nobody to talk to.

The engine (torch) is imported lazily: `Hello` goes out before torch is imported, and a `prewarm`
thread imports the engine meanwhile so the first load does not pay for it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any

from app.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Failed,
    Generate,
    Hello,
    Loading,
    LoadModel,
    Ready,
    Shutdown,
)
from app.worker.buffer import EventBuffer
from app.worker.jobrun import is_out_of_memory, run_job

DEFAULT_ENGINE = "app.engine.pipeline:Pipeline"


def worker_main(
    requests: Connection, events: Connection, engine: str = DEFAULT_ENGINE, prewarm: bool = True
) -> None:
    """Process entry point (spawn target): serve requests until Shutdown or the parent dies."""
    Host(requests, events, engine).serve(prewarm=prewarm)
    # Skip interpreter teardown: with torch loaded it takes about a second, the app's exit waits
    # on it, and the worker owns nothing that needs it (no files, the driver frees the device).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _parent_gone(why: str) -> None:
    # os._exit, not sys.exit: the main thread may be deep inside a forward pass and the work is
    # worthless now; nothing here needs flushing.
    with contextlib.suppress(Exception):
        sys.stderr.write(f"unmask worker {os.getpid()}: {why}; exiting\n")
    os._exit(0)


def watch_parent() -> None:
    """Exit when the process that spawned us dies (its sentinel becomes ready)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # started by hand, not by multiprocessing: nothing to watch
        return
    wait([parent.sentinel])
    _parent_gone("the app process ended")


def resolve(spec: str) -> Any:
    """'package.module:Name' -> the object."""
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class Outbox:
    """Events waiting for the pipe, sent by their own thread."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._buffer = EventBuffer()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send_loop, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, event: object) -> None:
        with self._cond:
            self._buffer.push(event)
            self._cond.notify()

    def close(self, timeout: float) -> None:
        """Send what is waiting (up to `timeout` seconds), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._closed:
                    self._cond.wait()
                if not self._buffer:
                    return
                event = self._buffer.pop()  # popped: no longer coalesced, safe to pickle
            try:
                self._conn.send(event)
            except (OSError, ValueError):
                _parent_gone("the event pipe closed")


class LoadProgress:
    """Engine progress(bytes_done, bytes_total) -> a few Loading events (not one per tensor)."""

    def __init__(self, outbox: Outbox, min_step: float = 0.01, min_interval: float = 0.25):
        self.outbox, self.min_step, self.min_interval = outbox, min_step, min_interval
        self.last_fraction, self.last_time = -1.0, 0.0

    def __call__(self, done: int, total: int) -> None:
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
        now = time.monotonic()
        if fraction <= self.last_fraction:
            return
        if (
            fraction >= 1.0
            or fraction - self.last_fraction >= self.min_step
            or now - self.last_time >= self.min_interval
        ):
            self.last_fraction, self.last_time = fraction, now
            self.outbox.put(Loading("weights", fraction))


class Host:
    def __init__(self, requests: Connection, events: Connection, engine: str = DEFAULT_ENGINE):
        self._requests = requests
        self.outbox = Outbox(events)
        self.engine = engine
        self.pipeline: Any = None
        self.model_path: str | None = None
        self._lock = threading.Condition()
        self._work: deque[LoadModel | Generate] = deque()
        self._running: tuple[str, threading.Event] | None = None  # job id, its cancel flag
        self._stopping = False
        self._prewarm: threading.Thread | None = None

    # ---- main thread ---------------------------------------------------------------------
    def serve(self, prewarm: bool = True) -> None:
        self.outbox.start()
        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
        self.outbox.put(Hello(PROTOCOL_VERSION, os.getpid()))
        threading.Thread(target=self._read_requests, name="requests", daemon=True).start()
        if prewarm:
            self._prewarm = threading.Thread(target=self._import_engine, name="prewarm", daemon=True)
            self._prewarm.start()
        while (item := self._next_work()) is not None:
            try:
                if isinstance(item, LoadModel):
                    self._load(item)
                else:
                    self._generate(item)
            except Exception as exc:  # a bug in the host itself: report it and keep serving
                traceback.print_exc()
                self.outbox.put(Failed(getattr(item, "job_id", None), "internal",
                                       f"Internal error in the worker ({type(exc).__name__}: "
                                       f"{exc}); the traceback is in the app's log."))
        self.outbox.close(timeout=5.0)

    def _import_engine(self) -> None:
        with contextlib.suppress(Exception):  # reported properly by the load that needs it
            resolve(self.engine)

    def _await_prewarm(self) -> None:
        # Importing the same modules from two threads at once is legal but can trip the import
        # lock's deadlock detector on circular imports; finishing the prewarm first is simpler.
        if self._prewarm is not None:
            self._prewarm.join()
            self._prewarm = None

    def _next_work(self) -> LoadModel | Generate | None:
        with self._lock:
            while not self._work and not self._stopping:
                self._lock.wait()
            if self._stopping:
                return None
            item = self._work.popleft()
            if isinstance(item, Generate):
                # Marked running under the same lock as the pop, so a Cancel cannot fall between.
                self._running = (item.job_id, threading.Event())
            return item

    def _load(self, request: LoadModel) -> None:
        path, had_model = request.path, self.pipeline is not None
        if not os.path.isdir(path):
            what = "is not a folder" if os.path.exists(path) else "not found"
            self.outbox.put(Failed(None, "bad_input", f"{path}: model folder {what}",
                                   model_loaded=had_model))
            return
        self._await_prewarm()
        self.outbox.put(Loading("engine", 0.0))
        kwargs: dict[str, Any] = {"device": request.device, "placement": request.placement}
        try:
            factory = resolve(self.engine)
            if request.dtype:
                import torch

                dtype = getattr(torch, request.dtype, None)
                if not isinstance(dtype, torch.dtype):
                    self.outbox.put(Failed(None, "bad_input", f"unknown dtype {request.dtype!r}",
                                           model_loaded=had_model))
                    return
                kwargs["dtype"] = dtype
        except Exception as exc:
            traceback.print_exc()
            self.outbox.put(Failed(None, "internal", f"cannot start the engine {self.engine} "
                                   f"({type(exc).__name__}: {exc})", model_loaded=had_model))
            return
        self._drop_model()  # before loading: two large models rarely fit side by side
        try:
            pipeline = factory.load(path, progress=LoadProgress(self.outbox), **kwargs)
            info = dict(pipeline.describe())
        except ValueError as exc:  # CheckpointError / ConfigError: a broken folder
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            self.outbox.put(Failed(None, "model", message, model_loaded=False))
            return
        except Exception as exc:
            if is_out_of_memory(exc):
                message = (f"{path}: not enough memory to load this model on {request.device}; "
                           "try a placement that keeps more experts on the CPU")
                self.outbox.put(Failed(None, "model", message, model_loaded=False))
            else:
                traceback.print_exc()
                self.outbox.put(Failed(None, "internal", f"{path}: loading failed "
                                       f"({type(exc).__name__}: {exc})", model_loaded=False))
            return
        self.pipeline, self.model_path = pipeline, path
        self.outbox.put(Ready(model_info=info, placement_summary=info.get("placement")))

    def _drop_model(self) -> None:
        if self.pipeline is None:
            return
        self.pipeline = self.model_path = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _generate(self, request: Generate) -> None:
        assert self._running is not None
        flag = self._running[1]
        try:
            if self.pipeline is not None:
                self._await_prewarm()
            final = run_job(self, request, flag)
        finally:
            with self._lock:
                self._running = None
        self.outbox.put(final)

    # ---- requests thread -----------------------------------------------------------------
    def _read_requests(self) -> None:
        while True:
            try:
                request = self._requests.recv()
            except (EOFError, OSError):
                if self._stopping:
                    return
                _parent_gone("the request pipe closed")
                return
            except Exception as exc:  # e.g. a class this worker does not know (another version)
                self.outbox.put(Failed(None, "internal", f"unreadable request ({exc})"))
                continue
            if isinstance(request, Cancel):
                self._cancel(request.job_id)
            elif isinstance(request, Shutdown):
                self._shutdown()
                return
            elif isinstance(request, (LoadModel, Generate)):
                with self._lock:
                    self._work.append(request)
                    self._lock.notify()
            else:
                self.outbox.put(Failed(None, "internal",
                                       f"unknown request {type(request).__name__}"))

    def _cancel(self, job_id: str) -> None:
        removed = None
        with self._lock:
            if self._running is not None and self._running[0] == job_id:
                self._running[1].set()  # seen by should_cancel before the next step
                return
            for item in self._work:
                if isinstance(item, Generate) and item.job_id == job_id:
                    removed = item
                    break
            if removed is not None:
                self._work.remove(removed)
        if removed is not None:
            self.outbox.put(Failed(job_id, "cancelled", "Cancelled before it started."))
        # else: already finished; its Done/Failed is on its way

    def _shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running[1].set()
            pending = [item for item in self._work if isinstance(item, Generate)]
            self._work.clear()
            self._lock.notify_all()
        for item in pending:
            self.outbox.put(Failed(item.job_id, "cancelled", "The worker is shutting down."))

