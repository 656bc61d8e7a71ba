"""The one prompt box: mode selector, attached images, the text, Run and Stop.

The mode is always visible and follows the situation where it is obvious (AppState: a painted
mask means Inpaint, an attached image means Ask); the user can pick another at any time.
Pasting or dropping an image into the box attaches it instead of inserting nothing.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.canvas import mime_image
from app.ui.chat import thumbnail
from app.ui.state import MODE_LABEL, MODES, AppState

HINTS = {
    "draw": "Describe a picture — e.g. “a large red circle at the center on a blue background”",
    "edit": "Say what to change in the canvas image — e.g. “make the circle green”",
    "inpaint": "Paint over an area with the brush, then describe what goes there",
    "ask": "Ask about the attached image(s), or the canvas if none is attached",
    "chat": "Talk to the model",
}
SHORTCUTS = {"draw": "Alt+1", "edit": "Alt+2", "inpaint": "Alt+3", "ask": "Alt+4", "chat": "Alt+5"}


class PromptEdit(QPlainTextEdit):
    image_pasted = Signal(bytes, str)

    def canInsertFromMimeData(self, source) -> bool:  # noqa: N802 (Qt)
        return mime_image(source) is not None or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:  # noqa: N802
        if not source.hasText() or source.hasImage() or source.hasUrls():
            found = mime_image(source)
            if found is not None:
                self.image_pasted.emit(*found)
                return
        super().insertFromMimeData(source)


class PromptBox(QWidget):
    run_requested = Signal()
    stop_requested = Signal()
    attach_requested = Signal()
    image_attached = Signal(bytes, str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("promptBox")
        self.mode_group = QButtonGroup(self)
        self.mode_group.setExclusive(True)
        modes = QHBoxLayout()
        modes.setSpacing(2)
        self.mode_buttons: dict[str, QToolButton] = {}
        for mode in MODES:
            button = QToolButton(text=MODE_LABEL[mode], checkable=True)
            button.setObjectName("modeButton")
            button.setToolTip(f"{HINTS[mode]} ({SHORTCUTS[mode]})")
            button.setShortcut(SHORTCUTS[mode])
            button.clicked.connect(lambda _=False, m=mode: state.set_mode(m))
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            modes.addWidget(button)
        modes.addStretch(1)
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        self.attach_row = QHBoxLayout()
        self.attach_row.setSpacing(6)
        self.edit = PromptEdit()
        self.edit.setObjectName("prompt")
        self.edit.setPlaceholderText("Prompt… (Ctrl+Enter to run)")
        self.edit.setFixedHeight(78)
        self.edit.image_pasted.connect(self.image_attached)
        self.attach_button = QToolButton(text="Attach…", toolTip="Attach an image to ask about")
        self.attach_button.clicked.connect(self.attach_requested)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("runButton")
        self.run_button.setToolTip("Run (Ctrl+Enter)")
        self.run_button.clicked.connect(self.run_requested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop (Esc)")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(modes)
        layout.addWidget(self.hint)
        layout.addLayout(self.attach_row)
        layout.addWidget(self.edit)
        layout.addLayout(buttons)
        state.mode_changed.connect(self._show_mode)
        state.attachments.changed.connect(self._show_attachments)
        self._show_mode(state.mode)
        self._show_attachments()

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.setFocus()

    def set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.run_button.setText("Queue" if busy else "Run")

    def _show_mode(self, mode: str) -> None:
        self.mode_buttons[mode].setChecked(True)
        self.hint.setText(HINTS[mode])

    def _show_attachments(self) -> None:
        while self.attach_row.count():
            item = self.attach_row.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for k, item in enumerate(self.state.attachments.items):
            button = QToolButton(toolTip=f"{item.name} — click to remove")
            button.setObjectName("thumb")
            button.setIcon(QIcon(thumbnail(item.png, 48)))
            button.setIconSize(QSize(48, 48))
            button.clicked.connect(lambda _=False, i=k: self.state.attachments.remove(i))
            self.attach_row.addWidget(button)
        if self.state.attachments.items:
            self.attach_row.addStretch(1)
