"""The status bar (model, device, placement, steps/s, worker state) and the notice bar.

Notices never block: an info note fades after a few seconds, a warning or an error stays until
closed or replaced. Every notice is also kept in `NoticeBar.log` (the window's history of them).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QStatusBar, QToolButton

from app.ui.state import WorkerStatus

STATE_TEXT = {
    "stopped": "Worker stopped", "starting": "Starting the worker…", "loading": "Loading model",
    "ready": "Ready", "busy": "Generating", "restarting": "Worker restarting…",
    "no_model": "No model loaded", "dead": "Worker stopped",
}


def placement_text(info: dict | None, placement) -> str:
    if not info:
        return ""
    if isinstance(placement, dict) and "experts_total" in placement:
        return (f"experts on GPU {placement.get('resident_total', 0)}/"
                f"{placement['experts_total']}" + (" · int8 CPU" if placement.get("int8_cpu")
                                                   else ""))
    device = str(info.get("device", "cpu"))
    return "all weights on CPU" if device.startswith("cpu") else f"all weights on {device}"


def params_text(count) -> str:
    if not isinstance(count, (int, float)):
        return ""
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


class StatusBar(QStatusBar):
    def __init__(self, status: WorkerStatus) -> None:
        super().__init__()
        self.status = status
        self.setSizeGripEnabled(False)
        self.model = QLabel()
        self.device = QLabel()
        self.placement = QLabel()
        self.speed = QLabel()
        self.state = QLabel()
        self.state.setObjectName("workerState")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFixedWidth(140)
        self.progress.setTextVisible(False)
        self.progress.hide()
        for widget in (self.model, self.device, self.placement, self.speed):
            self.addWidget(widget)
        self.addPermanentWidget(self.progress)
        self.addPermanentWidget(self.state)
        status.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        s = self.status
        info = s.model_info or {}
        if info:
            size = params_text(info.get("params"))
            self.model.setText(f"Model: {info.get('name', '?')}" + (f" ({size})" if size else ""))
            dtype = info.get("dtype")
            self.device.setText(f"{info.get('device', '?')}" + (f" · {dtype}" if dtype else ""))
        else:
            self.model.setText("Model: —")
            self.device.setText("")
        self.placement.setText(placement_text(info, s.placement))
        self.speed.setText(f"{s.steps_per_s:.1f} steps/s" if s.steps_per_s else "")
        text = STATE_TEXT.get(s.state, s.state)
        if s.state == "loading":
            text += f" ({s.stage})" if s.stage else ""
        if s.queued:
            text += f" · {s.queued} queued"
        self.state.setText(text)
        self.state.setToolTip(s.message)
        if self.state.property("state") != s.state:  # re-style only when the state changes
            self.state.setProperty("state", s.state)
            self.state.style().unpolish(self.state)
            self.state.style().polish(self.state)
        loading = s.state in ("loading", "starting", "restarting")
        self.progress.setVisible(loading)
        if s.progress is None:
            self.progress.setRange(0, 0)  # busy indicator
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(s.progress * 1000))


class NoticeBar(QFrame):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("notice")
        self.log: list[tuple[str, str]] = []
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(text="✕", toolTip="Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.hide)
        self.hide()

    def show_notice(self, level: str, text: str) -> None:
        self.log.append((level, text))
        self.label.setText(text)
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()
        if level == "info":
            self.timer.start(4000)
        else:
            self.timer.stop()
