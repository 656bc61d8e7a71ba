"""A submitted job as the GUI sees it: its state and an async iterator over its events.

The stream ends with exactly one Done or Failed. Events wait in a coalescing buffer
(app/worker/buffer.py) until the caller iterates, so code that iterates slowly (or only awaits
`wait()`) keeps every step record but only the newest unseen preview.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.protocol import Done, Failed, Generate, Started, is_terminal
from app.worker.buffer import EventBuffer

# queued -> running -> done | failed | cancelled   (queued -> cancelled when removed)
STATES = ("queued", "running", "done", "failed", "cancelled")


class JobStream:
    def __init__(self, request: Generate, cancel: Callable[[str], bool]):
        self.request = request
        self.job_id = request.job_id
        self.state = "queued"
        self.final: Done | Failed | None = None
        self.cancel_requested = False
        self.duplicate_terminals = 0  # terminal events after the first (should stay 0)
        self._cancel = cancel
        self._buffer = EventBuffer()
        self._waiter: asyncio.Future[None] | None = None
        self._final_waiters: list[asyncio.Future[Done | Failed]] = []

    def __repr__(self) -> str:
        return f"<JobStream {self.job_id} {self.state}>"

    @property
    def done(self) -> bool:
        return self.final is not None

    @property
    def dropped_previews(self) -> int:
        return self._buffer.dropped_previews

    def cancel(self) -> bool:
        """Cancel this job (queued: removed at once; running: stops before its next step)."""
        return self._cancel(self.job_id)

    async def wait(self) -> Done | Failed:
        """The final event, without iterating (events stay available to iterate afterwards)."""
        if self.final is not None:
            return self.final
        future: asyncio.Future[Done | Failed] = asyncio.get_running_loop().create_future()
        self._final_waiters.append(future)
        return await future

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> object:
        while True:
            if self._buffer:
                return self._buffer.pop()
            if self.final is not None:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _push(self, event: object) -> None:
        """Called by the client on the loop thread."""
        if self.final is not None:
            if is_terminal(event):
                self.duplicate_terminals += 1
            return  # nothing belongs to a job after its end
        if isinstance(event, Started):
            self.state = "running"
        if is_terminal(event):
            assert isinstance(event, (Done, Failed))
            self.final = event
            if isinstance(event, Done):
                self.state = "done"
            else:
                self.state = "cancelled" if event.kind == "cancelled" else "failed"
            for future in self._final_waiters:
                if not future.done():
                    future.set_result(event)
            self._final_waiters.clear()
        self._buffer.push(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class JobQueue:
    """Jobs waiting for the worker, next first. It lives in the client (the worker gets one job at
    a time), so reordering and removing are plain list operations that cannot race the worker."""

    def __init__(self) -> None:
        self._items: list[JobStream] = []

    def __len__(self) -> int:
        return len(self._items)

    def ids(self) -> list[str]:
        return [s.job_id for s in self._items]

    def append(self, stream: JobStream) -> None:
        self._items.append(stream)

    def pop_next(self) -> JobStream:
        return self._items.pop(0)

    def take(self, job_id: str) -> JobStream | None:
        """Remove and return the queued job, or None if it is not queued."""
        for i, stream in enumerate(self._items):
            if stream.job_id == job_id:
                return self._items.pop(i)
        return None

    def move(self, job_id: str, index: int) -> bool:
        stream = self.take(job_id)
        if stream is None:
            return False
        self._items.insert(max(0, index), stream)
        return True

    def reorder(self, job_ids: list[str] | tuple[str, ...]) -> list[str]:
        by_id = {s.job_id: s for s in self._items}
        front = [by_id.pop(j) for j in dict.fromkeys(job_ids) if j in by_id]
        self._items = front + [s for s in self._items if s.job_id in by_id]
        return self.ids()

    def clear(self) -> list[JobStream]:
        items, self._items = self._items, []
        return items
