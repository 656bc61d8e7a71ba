"""Observable view state (krita-ai-diffusion's `model/`): plain objects with Qt signals, no widgets.

Widgets read these and call their methods; the controller (app/ui/controller.py) feeds them from
the worker. Persistence goes through app/ui/persistence.py and happens where the state changes,
so a widget never writes a file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.ui.document import CanvasDoc
from app.ui.persistence import (
    Conversation,
    DataDir,
    HistoryEntry,
    Message,
    Settings,
    load_settings,
    save_settings,
)
from app.ui.run_record import RunRecord

MODES = ("draw", "edit", "inpaint", "ask", "chat")
MODE_TASK = {"draw": "generate", "edit": "edit", "inpaint": "inpaint", "ask": "ask", "chat": "chat"}
MODE_LABEL = {"draw": "Draw", "edit": "Edit", "inpaint": "Inpaint", "ask": "Ask", "chat": "Chat"}
TASK_MODE = {task: mode for mode, task in MODE_TASK.items()}


class WorkerStatus(QObject):
    """What the worker is doing, for the status bar and the notice bar."""

    changed = Signal()
    # stopped | starting | loading | ready | busy | restarting | no_model | dead
    def __init__(self) -> None:
        super().__init__()
        self.state = "stopped"
        self.stage = ""
        self.progress: float | None = None
        self.model_info: dict | None = None
        self.placement = None
        self.message = ""
        self.steps_per_s: float | None = None
        self.queued = 0
        self.restarts = 0

    def update(self, **changes) -> None:
        for key, value in changes.items():
            if not hasattr(self, key):
                raise AttributeError(key)
            setattr(self, key, value)
        self.changed.emit()


@dataclass
class Attachment:
    png: bytes  # the file as dropped/pasted (decoded once to check it and make a thumbnail)
    image: np.ndarray
    name: str


class Attachments(QObject):
    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Attachment] = []

    def add(self, item: Attachment) -> None:
        self.items.append(item)
        self.changed.emit()

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.items):
            del self.items[index]
            self.changed.emit()

    def clear(self) -> None:
        if self.items:
            self.items.clear()
            self.changed.emit()


class Conversations(QObject):
    """The conversation list and the current one; every change is saved at once."""

    list_changed = Signal()
    current_changed = Signal()
    message_changed = Signal(int)  # index of a message in the current conversation

    def __init__(self, data: DataDir, warnings: list[str]) -> None:
        super().__init__()
        self.data = data
        self.items: list[Conversation] = data.conversations.load_all(warnings)
        self.current: Conversation | None = None
        for conversation in self.items:  # runs the last session did not finish
            for message in conversation.messages:
                if message.status == "running":
                    message.status = "cancelled"
                    message.text = (message.text + "\n\n" if message.text else "") + \
                        "[Interrupted: the app closed during this run.]"

    def select(self, conv_id: str | None) -> Conversation:
        found = next((c for c in self.items if c.id == conv_id), None)
        if found is None:
            found = self.items[0] if self.items else self.new()
        self.current = found
        self.current_changed.emit()
        return found

    def new(self, title: str = "New conversation") -> Conversation:
        conversation = Conversation(title=title)
        self.items.insert(0, conversation)
        self.data.conversations.save(conversation)
        self.current = conversation
        self.list_changed.emit()
        self.current_changed.emit()
        return conversation

    def rename(self, conv_id: str, title: str) -> None:
        for conversation in self.items:
            if conversation.id == conv_id:
                conversation.title = title.strip() or conversation.title
                self.data.conversations.save(conversation)
        self.list_changed.emit()

    def delete(self, conv_id: str) -> None:
        self.items = [c for c in self.items if c.id != conv_id]
        self.data.conversations.delete(conv_id)
        self.list_changed.emit()
        if self.current is not None and self.current.id == conv_id:
            self.current = None
            self.select(None)

    def get(self, conv_id: str) -> Conversation | None:
        return next((c for c in self.items if c.id == conv_id), None)

    def append(self, message: Message) -> tuple[str, int]:
        """Add to the current conversation; returns (conversation id, message index)."""
        conversation = self.current or self.select(None)
        conversation.messages.append(message)
        if message.role == "user" and conversation.title == "New conversation" and message.text:
            conversation.title = message.text[:40]
            self.list_changed.emit()
        self._save(conversation)
        index = len(conversation.messages) - 1
        self.message_changed.emit(index)
        return conversation.id, index

    def update(self, conv_id: str, index: int, save: bool = True, **changes) -> None:
        """Change a message of any conversation (a run may finish after the user switched)."""
        conversation = self.get(conv_id)
        if conversation is None or not 0 <= index < len(conversation.messages):
            return
        message = conversation.messages[index]
        for key, value in changes.items():
            setattr(message, key, value)
        if save:
            self._save(conversation)
        if conversation is self.current:
            self.message_changed.emit(index)

    def _save(self, conversation: Conversation) -> None:
        conversation.updated = time.time()
        self.data.conversations.save(conversation)


class History(QObject):
    changed = Signal()

    def __init__(self, data: DataDir, warnings: list[str]) -> None:
        super().__init__()
        self.data = data
        self.entries: list[HistoryEntry] = data.history.load(warnings)

    def add(self, entry: HistoryEntry) -> None:
        self.entries.append(entry)
        self._save()

    def get(self, entry_id: str) -> HistoryEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def star(self, entry_id: str, starred: bool | None = None) -> None:
        entry = self.get(entry_id)
        if entry is not None:
            entry.starred = (not entry.starred) if starred is None else starred
            self._save()

    def delete(self, entry_id: str) -> None:
        entry = self.get(entry_id)
        if entry is None:
            return
        self.entries.remove(entry)
        if entry.image:
            self.data.images.delete(entry.image)
        self._save()

    def _save(self) -> None:
        self.data.history.save(self.entries)
        self.changed.emit()


class AppState(QObject):
    """Everything the window shows, in one place."""

    mode_changed = Signal(str)
    settings_changed = Signal()
    run_started = Signal(object)  # RunRecord
    run_updated = Signal(object)
    run_finished = Signal(object)
    notice = Signal(str, str)  # level (info | warning | error), text
    prompt_requested = Signal(str)  # "use prompt" from the history

    def __init__(self, data: DataDir) -> None:
        super().__init__()
        self.data = data
        self.warnings: list[str] = []
        self.settings: Settings = load_settings(data.settings_path, self.warnings)
        self.worker = WorkerStatus()
        self.canvas = CanvasDoc()
        self.attachments = Attachments()
        self.conversations = Conversations(data, self.warnings)
        self.history = History(data, self.warnings)
        self.mode = "draw"
        self.runs: list[RunRecord] = []  # this session's runs, oldest first
        self.viewed_run: RunRecord | None = None  # what the timeline shows
        self.session_experts: dict[str, np.ndarray] = {}  # "text"/"image" -> summed counts
        self.canvas.mask_changed.connect(self._follow_mask)
        self.attachments.changed.connect(self._follow_attachments)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode != self.mode:
            self.mode = mode
            self.mode_changed.emit(mode)

    # The mode follows the situation where that is obvious, and only then.
    def _follow_mask(self) -> None:
        if self.canvas.has_mask and self.mode != "inpaint" and not (
                self.mode == "ask" and self.attachments.items):  # painting a mask is deliberate
            self.set_mode("inpaint")
        elif not self.canvas.has_mask and self.mode == "inpaint":
            self.set_mode("edit" if self.canvas.image is not None else "draw")

    def _follow_attachments(self) -> None:
        if self.attachments.items and self.mode in ("draw", "edit", "inpaint", "chat"):
            self.set_mode("ask")
        elif not self.attachments.items and self.mode == "ask" and self.canvas.image is None:
            self.set_mode("chat")

    def save_settings(self) -> None:
        save_settings(self.data.settings_path, self.settings)
        self.settings_changed.emit()

    def warn(self, text: str, level: str = "warning") -> None:
        self.notice.emit(level, text)

    def add_session_experts(self, kind: str, counts: np.ndarray | None) -> None:
        if counts is None:
            return
        counts = np.asarray(counts, dtype=np.int64)
        old = self.session_experts.get(kind)
        self.session_experts[kind] = counts if old is None or old.shape != counts.shape \
            else old + counts
