"""The history strip: every result with the parameters that made it.

Each tile remembers task, prompt, resolved seed and settings (HistoryEntry), so it can be
reopened, its prompt or seed reused, or the exact request run again. Starred tiles stay first.
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.chat import thumbnail
from app.ui.persistence import HistoryEntry
from app.ui.state import MODE_LABEL, TASK_MODE, AppState

TILE = 72


def text_tile(text: str) -> QPixmap:
    pixmap = QPixmap(TILE, TILE)
    pixmap.fill(QColor(40, 42, 50))
    p = QPainter(pixmap)
    font = QFont()
    font.setPixelSize(10)
    p.setFont(font)
    p.setPen(QColor(200, 202, 214))
    p.drawText(QRectF(5, 5, TILE - 10, TILE - 10), Qt.TextFlag.TextWordWrap, text[:80])
    p.end()
    return pixmap


def describe(entry: HistoryEntry) -> str:
    params = entry.params
    steps = params.get("image_steps") if entry.task not in ("ask", "chat") else \
        params.get("text_steps")
    lines = [f"<b>{MODE_LABEL.get(TASK_MODE.get(entry.task, ''), entry.task)}</b>: "
             f"{html.escape(entry.prompt)}",
             f"seed {params.get('seed')} · {steps} steps · cfg {params.get('cfg')} · "
             f"model {html.escape(entry.model)}",
             time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created))]
    if entry.text:
        lines.append(f"answer: {html.escape(entry.text[:200])}")
    return "<br>".join(lines)


class HistoryStrip(QWidget):
    reopen = Signal(str)
    use_prompt = Signal(str)
    use_seed = Signal(str)
    rerun = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("history")
        self._icons: dict[str, QIcon] = {}  # entry id -> tile (files are read once)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setFlow(QListView.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setIconSize(QSize(TILE, TILE))
        self.list.setGridSize(QSize(TILE + 12, TILE + 12))
        self.list.setFixedHeight(TILE + 26)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemDoubleClicked.connect(lambda item: self.reopen.emit(self._id(item)))
        self.buttons: dict[str, QToolButton] = {}
        column = QVBoxLayout()
        column.setSpacing(2)
        for key, label, tip in (("reopen", "Open", "Open on the canvas"),
                                ("prompt", "Prompt", "Use this prompt"),
                                ("seed", "Seed", "Use this seed"),
                                ("rerun", "Re-run", "Run exactly this again"),
                                ("star", "★", "Star / unstar"),
                                ("delete", "✕", "Delete from history")):
            button = QToolButton(text=label, toolTip=tip)
            button.clicked.connect(lambda _=False, k=key: self.act(k))
            self.buttons[key] = button
        grid_a, grid_b = QHBoxLayout(), QHBoxLayout()
        for k, key in enumerate(self.buttons):
            (grid_a if k < 3 else grid_b).addWidget(self.buttons[key])
        column.addLayout(grid_a)
        column.addLayout(grid_b)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 4)
        layout.addWidget(self.list, 1)
        layout.addLayout(column)
        state.history.changed.connect(self.refresh)
        self.list.currentItemChanged.connect(self._sync_buttons)
        self.refresh()

    @staticmethod
    def _id(item: QListWidgetItem | None) -> str:
        return "" if item is None else item.data(Qt.ItemDataRole.UserRole)

    def selected(self) -> HistoryEntry | None:
        return self.state.history.get(self._id(self.list.currentItem()))

    def refresh(self) -> None:
        keep = self._id(self.list.currentItem())
        self.list.clear()
        entries = sorted(self.state.history.entries, key=lambda e: (not e.starred, -e.created))
        for entry in entries:
            icon = self._icons.get(entry.id)
            if icon is None:
                png = self.state.data.images.get(entry.image) if entry.image else None
                icon = QIcon(thumbnail(png, TILE) if png else text_tile(entry.text or entry.prompt))
                self._icons[entry.id] = icon
            label = ("★ " if entry.starred else "") + entry.prompt[:14]
            item = QListWidgetItem(icon, label)
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(describe(entry))
            self.list.addItem(item)
            if entry.id == keep:
                self.list.setCurrentItem(item)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        entry = self.selected()
        for button in self.buttons.values():
            button.setEnabled(entry is not None)
        if entry is not None:
            self.buttons["star"].setText("☆" if entry.starred else "★")

    def act(self, key: str, entry_id: str | None = None) -> None:
        entry_id = entry_id or self._id(self.list.currentItem())
        if not entry_id:
            return
        if key == "star":
            self.state.history.star(entry_id)
        elif key == "delete":
            self.state.history.delete(entry_id)
        else:
            {"reopen": self.reopen, "prompt": self.use_prompt, "seed": self.use_seed,
             "rerun": self.rerun}[key].emit(entry_id)

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        entry_id = self._id(item)
        menu = QMenu(self)
        for key, label in (("reopen", "Open on canvas"), ("prompt", "Use prompt"),
                           ("seed", "Use seed"), ("rerun", "Re-run"), ("star", "Star / unstar"),
                           ("delete", "Delete")):
            action = QAction(label, menu)
            action.triggered.connect(lambda _=False, k=key: self.act(k, entry_id))
            menu.addAction(action)
        menu.exec(self.list.viewport().mapToGlobal(pos))
