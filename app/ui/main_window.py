"""The main window: canvas in the centre, timeline and history under it, chat on the right.

Layout and wiring only. View state lives in AppState (app/ui/state.py), worker calls in Studio
(app/ui/controller.py), menus and shortcuts in app/ui/actions.py, file and clipboard handling in
app/ui/files.py.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtWidgets import (
    QMainWindow,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.ui import actions, files
from app.ui.canvas import CanvasView
from app.ui.chat import ChatPanel, render_stream
from app.ui.controller import RunError, Studio, with_thinking
from app.ui.experts import ExpertPanel
from app.ui.history import HistoryStrip
from app.ui.prompt import PromptBox
from app.ui.run_record import RunRecord
from app.ui.settings import SettingsDialog, needs_reload
from app.ui.state import TASK_MODE, AppState
from app.ui.statusbar import NoticeBar, StatusBar
from app.ui.timeline import Timeline


class MainWindow(QMainWindow):
    closed = Signal()

    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.state: AppState = studio.state
        state = self.state
        self.setWindowTitle("Unmask Studio")
        self.resize(1360, 860)
        self.canvas = CanvasView(state.canvas)
        self.timeline = Timeline()
        self.history = HistoryStrip(state)
        self.notice = NoticeBar()
        self.chat = ChatPanel(state)
        self.experts = ExpertPanel(state)
        self.prompt = PromptBox(state)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.chat, "Chat")
        self.tabs.addTab(self.experts, "Experts")
        left = QWidget()
        left.setObjectName("stage")
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.notice)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.timeline)
        column.addWidget(self.history)
        right = QWidget()
        right.setObjectName("side")
        side = QVBoxLayout(right)
        side.setContentsMargins(6, 6, 6, 6)
        side.addWidget(self.tabs, 1)
        side.addWidget(self.prompt)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([860, 480])
        self.setCentralWidget(self.splitter)
        self.status = StatusBar(state.worker)
        self.setStatusBar(self.status)
        self.acts = actions.install(self)
        self._apply_settings()
        self._connect()
        self.conversation_ready()
        for warning in state.warnings:
            self.notice.show_notice("warning", warning)

    # ---- wiring --------------------------------------------------------------------------
    def _connect(self) -> None:
        state, studio = self.state, self.studio
        state.notice.connect(self.notice.show_notice)
        state.run_started.connect(self._run_started)
        state.run_updated.connect(self._run_updated)
        state.run_finished.connect(self._run_finished)
        self.prompt.run_requested.connect(self.run)
        self.prompt.stop_requested.connect(self.stop)
        self.prompt.attach_requested.connect(lambda: files.attach_dialog(self))
        self.prompt.image_attached.connect(lambda data, name: files.attach(self, data, name))
        self.chat.attachment_dropped.connect(lambda data, name: files.attach(self, data, name))
        self.chat.open_image.connect(lambda name: files.open_stored(self, name))
        self.chat.stop_requested.connect(self.stop)
        self.chat.regenerate_requested.connect(self._regenerate)
        self.canvas.image_dropped.connect(lambda data, name: files.open_bytes(self, data, name))
        self.timeline.step_changed.connect(self._scrub)
        self.timeline.export_requested.connect(lambda kind: files.export_dialog(self, kind))
        self.history.reopen.connect(lambda i: files.open_history(self, i))
        self.history.use_prompt.connect(self._use_prompt)
        self.history.use_seed.connect(self._use_seed)
        self.history.rerun.connect(self._rerun)
        state.conversations.current_changed.connect(self._remember_conversation)
        del studio

    def _apply_settings(self) -> None:
        s = self.state.settings
        self.canvas.brush_size = s.brush_size
        self.canvas.overlays = set(s.overlays)
        self.timeline.set_fps(s.playback_fps)
        actions.sync_tools(self)
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))

    def conversation_ready(self) -> None:
        self.state.conversations.select(self.state.settings.last_conversation or None)

    def _remember_conversation(self) -> None:
        current = self.state.conversations.current
        if current is not None and current.id != self.state.settings.last_conversation:
            self.state.settings.last_conversation = current.id
            self.state.save_settings()

    # ---- running -------------------------------------------------------------------------
    def run(self) -> RunRecord | None:
        """Ctrl+Enter: send the prompt in the current mode."""
        mode = self.state.mode
        try:
            record = self.studio.run(mode, self.prompt.text())
        except RunError as exc:
            self.notice.show_notice("warning", str(exc))
            return None
        if mode in ("ask", "chat"):
            self.prompt.edit.clear()
        if record.kind == "text":
            self.tabs.setCurrentWidget(self.chat)
        return record

    def stop(self) -> None:
        """Esc: stop what is running (and drop what is queued)."""
        self.timeline.play_button.setChecked(False)
        self.studio.stop()

    def _regenerate(self, index: int) -> None:
        current = self.state.conversations.current
        if current is not None:
            self.studio.regenerate(current.id, index)

    def _rerun(self, entry_id: str) -> None:
        entry = self.state.history.get(entry_id)
        if entry is not None:
            self.studio.rerun(entry)

    def _use_prompt(self, entry_id: str) -> None:
        entry = self.state.history.get(entry_id)
        if entry is not None:
            self.prompt.set_text(entry.prompt)
            self.state.set_mode(TASK_MODE.get(entry.task, "draw"))

    def _use_seed(self, entry_id: str) -> None:
        entry = self.state.history.get(entry_id)
        seed = None if entry is None else entry.params.get("seed")
        if seed is None:
            return
        self.state.settings.seed_random, self.state.settings.seed = False, int(seed)
        self.state.save_settings()
        self.notice.show_notice("info", f"Seed fixed to {seed} (Settings to make it random).")

    def _run_started(self, record: RunRecord) -> None:
        self.prompt.set_busy(True)
        self.timeline.play_button.setChecked(False)
        self.timeline.set_run(record)
        self.experts.show_run(record)

    def _run_updated(self, record: RunRecord) -> None:
        if record is not self.timeline.run:
            return
        if not record.steps:  # thinking before a picture: its text streams into the chat
            self.chat.show_progress(record.target, "thinking")
            return
        self.timeline.refresh(follow=True)
        last = len(record.steps) - 1
        if record.kind == "image":
            self.canvas.show_run(record, last)
            self.chat.show_progress(record.target, f"step {last + 1} / {record.steps[-1].total}")
        self.experts.show_run(record, last)

    def _run_finished(self, record: RunRecord) -> None:
        self.prompt.set_busy(self.studio.busy)
        if record is self.timeline.run:
            self.timeline.refresh(follow=True)
            self.experts.show_run(record, None)
            if record.kind == "image" and record.state != "done" and record.steps:
                self.canvas.show_run(record, len(record.steps) - 1)  # what it got to

    def _scrub(self, index: int) -> None:
        record = self.timeline.run
        if record is None or not record.steps:
            return
        step = min(index, len(record.steps) - 1)
        self.experts.show_run(record, step)
        if record.kind == "image":
            self.canvas.show_run(record, index)  # the last slot: the final decode + overlays
            return
        conv_id, message = record.target
        current = self.state.conversations.current
        if current is None or current.id != conv_id or message >= len(self.chat.bubbles):
            return
        bubble = self.chat.bubbles[message]
        if index >= len(record.steps):
            bubble.refresh()
        else:
            previous = record.text_at(step - 1) if step > 0 else ""
            # an answer after its thinking keeps it in view
            bubble.body.setText(with_thinking(
                record.thinking, render_stream(record.text_at(step), previous), rich=True))

    # ---- settings ------------------------------------------------------------------------
    def open_settings(self) -> SettingsDialog:
        status = self.state.worker
        error = status.message if status.state == "no_model" else ""
        dialog = SettingsDialog(self.state.settings, self.studio.default_model, self, error)
        dialog.accepted.connect(lambda: self.apply_settings(dialog.result_settings()))
        dialog.open()
        return dialog

    def apply_settings(self, settings) -> None:
        old = self.state.settings
        self.state.settings = settings
        self.state.save_settings()
        if old.model_path != settings.model_path:
            self.studio.override_model = ""
        if needs_reload(old, settings):
            self.studio.spawn(self.studio.load_model())

    # ---- closing -------------------------------------------------------------------------
    def remember_layout(self) -> None:
        s = self.state.settings
        s.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        s.brush_size = self.canvas.brush_size
        s.overlays = sorted(self.canvas.overlays)
        s.playback_fps = self.timeline.fps
        self.state.save_settings()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.remember_layout()
        self.timeline.timer.stop()
        super().closeEvent(event)
        self.closed.emit()
