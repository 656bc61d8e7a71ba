"""The chat panel: conversations (list, switch, rename, delete) and their messages.

An answer streams by unmasking in place: the worker sends the partial answer with "▯" for each
still-masked token, so the text keeps its length and words appear where they belong, in the order
the model commits them. Words committed since the previous step are lit in the accent colour.
Image results show as thumbnails; clicking one opens it on the canvas.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.canvas import mime_image
from app.ui.persistence import Message
from app.ui.run_record import MASK_PLACEHOLDER
from app.ui.state import MODE_LABEL, AppState

THUMB = 96


def render_stream(text: str, previous: str) -> str:
    """Rich text of a partial answer: placeholders dim, words new since `previous` lit."""
    old = previous.split(" ") if previous else []
    parts = []
    for k, word in enumerate(text.split(" ")):
        if word == MASK_PLACEHOLDER:
            parts.append(f"<span style='color:#5d6070'>{MASK_PLACEHOLDER}</span>")
        elif k < len(old) and old[k] == MASK_PLACEHOLDER:
            parts.append(f"<span style='color:#b9a8ff;font-weight:600'>{html.escape(word)}</span>")
        else:
            parts.append(html.escape(word))
    return " ".join(parts).replace("\n", "<br>")


def thumbnail(png: bytes, size: int = THUMB) -> QPixmap:
    image = QImage.fromData(png)
    if image.isNull():
        return QPixmap()
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.FastTransformation))


class MessageBubble(QFrame):
    def __init__(self, panel: ChatPanel, index: int) -> None:
        super().__init__()
        self.panel, self.index = panel, index
        self.setObjectName("bubble")
        self.setProperty("role", self.message.role)  # styled once: a message keeps its role
        self.previous_text = ""
        self.shown_images: list[str] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        self.header = QLabel()
        self.header.setObjectName("bubbleHeader")
        self.body = QLabel()
        self.body.setObjectName("bubbleText")
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.RichText)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.thumbs = QHBoxLayout()
        self.thumbs.setSpacing(6)
        self.actions = QHBoxLayout()
        self.actions.addStretch(1)
        self.copy_button = QToolButton(text="Copy", toolTip="Copy the answer")
        self.regen_button = QToolButton(text="Regenerate", toolTip="Run this request again")
        self.stop_button = QToolButton(text="Stop", toolTip="Stop (Esc)")
        self.copy_button.clicked.connect(self._copy)
        self.regen_button.clicked.connect(lambda: panel.regenerate_requested.emit(self.index))
        self.stop_button.clicked.connect(panel.stop_requested)
        for button in (self.stop_button, self.copy_button, self.regen_button):
            self.actions.addWidget(button)
        layout.addWidget(self.header)
        layout.addWidget(self.body)
        layout.addLayout(self.thumbs)
        layout.addLayout(self.actions)
        self.refresh()

    @property
    def message(self) -> Message:
        conversation = self.panel.state.conversations.current
        assert conversation is not None
        return conversation.messages[self.index]

    def refresh(self) -> None:
        m = self.message
        user = m.role == "user"
        who = "You" if user else "Model"
        mode = MODE_LABEL.get(m.mode, m.mode)
        status = {"running": " · unmasking…", "failed": " · failed",
                  "cancelled": " · stopped"}.get(m.status, "")
        self.header_base = f"{who} · {mode}{status}"  # show_progress appends to this
        self.header.setText(self.header_base)
        empty = not user and m.status == "done" and not m.text and not m.images
        if m.status == "running":
            self.body.setText(render_stream(m.text, self.previous_text))
        elif empty:
            self.body.setText("<i style='color:#8a8e9c'>(the model gave an empty answer)</i>")
        else:
            self.body.setText(html.escape(m.text).replace("\n", "<br>"))
        self.body.setVisible(bool(m.text) or m.status == "running" or empty)
        self.previous_text = m.text
        if m.images != self.shown_images:
            self._fill_thumbs(m.images)
            self.shown_images = list(m.images)
        for button in (self.copy_button, self.regen_button):
            button.setVisible(not user and m.status != "running")
        self.stop_button.setVisible(not user and m.status == "running")

    def _fill_thumbs(self, names: list[str]) -> None:
        while self.thumbs.count():
            item = self.thumbs.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for name in names:
            png = self.panel.state.data.images.get(name)
            button = QToolButton(toolTip="Open on the canvas")
            button.setObjectName("thumb")
            if png:
                button.setIcon(QIcon(thumbnail(png)))
            button.setIconSize(QSize(THUMB, THUMB))
            button.clicked.connect(lambda _=False, n=name: self.panel.open_image.emit(n))
            self.thumbs.addWidget(button)
        self.thumbs.addStretch(1)

    def _copy(self) -> None:
        m = self.message
        clipboard = QGuiApplication.clipboard()
        if m.images:
            png = self.panel.state.data.images.get(m.images[0])
            if png:
                clipboard.setImage(QImage.fromData(png))
                return
        clipboard.setText(m.text)


class ChatPanel(QWidget):
    open_image = Signal(str)  # an image file name (the user's images folder)
    attachment_dropped = Signal(bytes, str)
    regenerate_requested = Signal(int)
    stop_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("chat")
        self.setAcceptDrops(True)
        self.bubbles: list[MessageBubble] = []
        self.picker = QComboBox(toolTip="Conversations")
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.activated.connect(self._picked)
        new = QToolButton(text="+", toolTip="New conversation")
        rename = QToolButton(text="Rename", toolTip="Rename this conversation")
        delete = QToolButton(text="Delete", toolTip="Delete this conversation")
        new.clicked.connect(lambda: state.conversations.new())
        rename.clicked.connect(self.rename_current)
        delete.clicked.connect(self.delete_current)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.picker, 1)
        for button in (new, rename, delete):
            top.addWidget(button)
        self.column = QWidget()
        self.column.setObjectName("chatColumn")
        self.column_layout = QVBoxLayout(self.column)
        self.column_layout.setContentsMargins(4, 4, 4, 4)
        self.column_layout.setSpacing(8)
        self.column_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.column)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.at_bottom = True
        bar = self.scroll.verticalScrollBar()
        bar.rangeChanged.connect(self._stick_to_bottom)
        bar.valueChanged.connect(lambda v: setattr(self, "at_bottom", v >= bar.maximum() - 4))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.scroll, 1)
        conversations = state.conversations
        conversations.list_changed.connect(self._fill_picker)
        conversations.current_changed.connect(self._rebuild)
        conversations.message_changed.connect(self._message_changed)
        self._fill_picker()
        self._rebuild()

    # ---- conversations -------------------------------------------------------------------
    def _fill_picker(self) -> None:
        self.picker.blockSignals(True)
        self.picker.clear()
        for conversation in self.state.conversations.items:
            self.picker.addItem(conversation.title, conversation.id)
        current = self.state.conversations.current
        if current is not None:
            self.picker.setCurrentIndex(max(0, self.picker.findData(current.id)))
        self.picker.blockSignals(False)

    def _picked(self, row: int) -> None:
        self.state.conversations.select(self.picker.itemData(row))

    def rename_current(self, title: str | None = None) -> None:
        current = self.state.conversations.current
        if current is None:
            return
        if title is None:
            title, ok = QInputDialog.getText(self, "Rename conversation", "Title:",
                                             text=current.title)
            if not ok:
                return
        self.state.conversations.rename(current.id, title)

    def delete_current(self, confirm: bool = True) -> None:
        current = self.state.conversations.current
        if current is None:
            return
        if confirm and QMessageBox.question(
                self, "Delete conversation",
                f"Delete “{current.title}” and its messages?") != QMessageBox.StandardButton.Yes:
            return
        self.state.conversations.delete(current.id)

    # ---- messages ------------------------------------------------------------------------
    def _rebuild(self) -> None:
        for bubble in self.bubbles:
            bubble.deleteLater()
        self.bubbles = []
        conversation = self.state.conversations.current
        for index in range(len(conversation.messages) if conversation else 0):
            self._add_bubble(index)
        self._fill_picker()

    def _add_bubble(self, index: int) -> None:
        bubble = MessageBubble(self, index)
        self.column_layout.insertWidget(self.column_layout.count() - 1, bubble)
        self.bubbles.append(bubble)

    def _message_changed(self, index: int) -> None:
        while len(self.bubbles) <= index:
            self._add_bubble(len(self.bubbles))
        self.bubbles[index].refresh()

    def show_progress(self, target: tuple[str, int], text: str) -> None:
        """A running image job's progress in its bubble header (e.g. "step 6 / 16")."""
        current = self.state.conversations.current
        conv_id, index = target
        if current is not None and current.id == conv_id and index < len(self.bubbles):
            bubble = self.bubbles[index]
            bubble.header.setText(f"{bubble.header_base} · {text}")

    def bubble_texts(self) -> list[str]:
        return [b.body.text() for b in self.bubbles]

    def _stick_to_bottom(self, _min: int, maximum: int) -> None:
        """New text keeps the view at the bottom, unless the user scrolled up to read."""
        if self.at_bottom:
            self.scroll.verticalScrollBar().setValue(maximum)

    # ---- attachments by drop -------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage() or mime.hasFormat("image/png"):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        found = mime_image(event.mimeData())
        if found is not None:
            event.acceptProposedAction()
            self.attachment_dropped.emit(*found)
