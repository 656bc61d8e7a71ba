"""One worker process as the GUI sees it: spawn it, send requests, read its events.

A reader thread blocks on the event pipe and hands events to the asyncio loop with
`call_soon_threadsafe` (DESIGN.md §1: the Windows proactor loop has no add_reader). It collects
them in a coalescing buffer and schedules one drain per batch, so a busy GUI loop finds one
callback holding a bounded batch, not thousands of callbacks each holding a preview.
The event pipe reaching EOF means the worker is gone (only the worker holds its write end); the
reader then reaps the process and reports a WorkerExited with a readable cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from app.protocol import WorkerExited
from app.worker.buffer import EventBuffer

DEFAULT_TARGET = "app.worker.host:worker_main"


def worker_entry(target: str, *args: Any) -> None:
    """Spawn target: resolves `target` in the child, so the GUI process never imports the host
    (and with it PIL and, through the engine, torch)."""
    from app.worker.host import resolve

    resolve(target)(*args)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped responding and was killed"
    if code == 0:
        return "it exited unexpectedly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " (most often the system ran out of memory)",
            "SIGSEGV": " (a crash in native code)",
            "SIGBUS": " (a crash in native code)",
            "SIGABRT": " (a native library aborted)",
        }.get(name, "")
        return f"it was killed by {name}{hint}"
    if sys.platform == "win32" and code > 0xFFFF:
        return f"it crashed with status {code:#x}"
    return f"it exited with code {code}"


class WorkerProcess:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[object]], None],
        *,
        engine: str,
        target: str = DEFAULT_TARGET,
        prewarm: bool = True,
    ):
        self._loop, self._deliver = loop, deliver
        self._engine, self._target, self._prewarm = engine, target, prewarm
        self._ctx = multiprocessing.get_context("spawn")
        self._inbox = EventBuffer()
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False
        self._send_lock = threading.Lock()
        self.process: Any = None
        self._requests: Any = None
        self._events: Any = None
        self.reader_done = threading.Event()

    def start(self) -> None:
        req_recv, req_send = self._ctx.Pipe(duplex=False)
        ev_recv, ev_send = self._ctx.Pipe(duplex=False)
        # daemon: multiprocessing terminates it at interpreter exit should shutdown be skipped.
        self.process = self._ctx.Process(
            target=worker_entry, name="unmask-worker", daemon=True,
            args=(self._target, req_recv, ev_send, self._engine, self._prewarm),
        )
        try:
            self.process.start()
        finally:
            # Our copies of the child's ends must go, or EOF would never be seen on either side.
            req_recv.close()
            ev_send.close()
        self._requests, self._events = req_send, ev_recv
        threading.Thread(target=self._read, name="unmask-worker-reader", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def send(self, request: object) -> bool:
        """False when the worker is gone (its WorkerExited follows from the reader)."""
        with self._send_lock:
            try:
                self._requests.send(request)
                return True
            except (OSError, ValueError):
                return False

    def kill(self) -> None:
        if self.is_alive():
            self.process.kill()

    def join(self, timeout: float) -> None:
        if self.process is not None:
            self.process.join(timeout)

    # ---- reader thread -------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                try:
                    event = self._events.recv()
                except (EOFError, OSError):
                    break
                except Exception as exc:  # unpicklable event: the message was consumed whole
                    sys.stderr.write(f"unmask: unreadable event from the worker ({exc})\n")
                    continue
                self._push(event)
            self.process.join(5.0)
            if self.process.is_alive():  # pipe closed but still running: it is of no use
                self.process.kill()
                self.process.join(2.0)
            code = self.process.exitcode
            self._push(WorkerExited(code, describe_exit(code)))
        finally:
            self._close_pipes()
            self.reader_done.set()

    def _close_pipes(self) -> None:
        with self._send_lock:
            for conn in (self._events, self._requests):
                with contextlib.suppress(OSError):
                    conn.close()

    def _push(self, event: object) -> None:
        with self._inbox_lock:
            self._inbox.push(event)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._inbox_lock:
            events = self._inbox.drain()
            self._drain_scheduled = False
        self._deliver(events)
