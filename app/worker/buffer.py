"""A FIFO of undelivered events whose memory stays flat when its reader falls behind.

Used at every hop where a fast writer meets a slower reader: the worker's outbox (model steps vs.
the pipe), the client's inbox (reader thread vs. a busy GUI loop) and each job's stream (events vs.
the code iterating it). Nothing is reordered and no step record is lost; only what a slow reader
could never usefully show is dropped:
- a Step's preview array once a newer preview of the same job and drawing (attempt) is waiting
  (the GUI paints only the latest canvas anyway; the step's positions/tokens/confidence are kept
  for the history);
- an ExpertActivity once a newer one of the same job is waiting (they are cumulative, so the newer
  one is written into the older's place).
Not thread-safe: callers hold their own lock.
"""

from __future__ import annotations

from collections import deque

from app.protocol import ExpertActivity, Step


class EventBuffer:
    def __init__(self) -> None:
        self._items: deque[object] = deque()
        # Per job: the newest undelivered Step still holding a preview / the undelivered activity.
        self._preview_holder: dict[str, Step] = {}
        self._activity: dict[str, ExpertActivity] = {}
        self.dropped_previews = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, event: object) -> None:
        if isinstance(event, Step) and event.preview is not None:
            older = self._preview_holder.get(event.job_id)
            # A self-check redraw (a new attempt) keeps the drawing before it whole: its last
            # preview is the picture the run may end up keeping.
            if older is not None and older.attempt == event.attempt:
                older.preview = None  # still undelivered, so nobody else holds this record
                self.dropped_previews += 1
            self._preview_holder[event.job_id] = event
        elif isinstance(event, ExpertActivity):
            older_activity = self._activity.get(event.job_id)
            if older_activity is not None:
                older_activity.counts = event.counts
                return
            self._activity[event.job_id] = event
        self._items.append(event)

    def pop(self) -> object:
        """The oldest event; IndexError when empty."""
        event = self._items.popleft()
        job_id = getattr(event, "job_id", None)
        if job_id is not None:
            if self._preview_holder.get(job_id) is event:
                del self._preview_holder[job_id]
            if self._activity.get(job_id) is event:
                del self._activity[job_id]
        return event

    def drain(self) -> list[object]:
        """Every waiting event, oldest first; the buffer is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        self._preview_holder.clear()
        self._activity.clear()
        return items
