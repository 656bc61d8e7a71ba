"""Menus, the canvas toolbar and keyboard shortcuts (QKeySequence standard keys where they exist).

Text fields keep their own meaning of the standard keys: with the prompt focused, Ctrl+Z undoes
typing and Ctrl+V pastes text (an image on the clipboard is attached instead); elsewhere they act
on the canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QSlider, QToolBar

from app.ui import files

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

StdKey = QKeySequence.StandardKey
OVERLAY_ACTIONS = (("mask", "Masked", "Ctrl+1", "Hatch the cells that are still masked"),
                   ("confidence", "Confidence", "Ctrl+2", "Heat map of the model's confidence"),
                   ("order", "Commit order", "Ctrl+3", "Which step committed each cell"),
                   ("revised", "Revised", "Ctrl+4", "Cells changed by self-correction"))


def keys(standard: StdKey | None, *fallback: str) -> list[QKeySequence]:
    found = QKeySequence.keyBindings(standard) if standard is not None else []
    have = {k.toString() for k in found}
    return list(found) + [QKeySequence(f) for f in fallback if f not in have]


def install(window: MainWindow) -> dict[str, QAction]:
    canvas, doc = window.canvas, window.state.canvas
    made: dict[str, QAction] = {}

    def act(key, text, shortcuts, slot, tip="", checkable=False) -> QAction:
        action = QAction(text, window)
        action.setShortcuts(shortcuts)
        action.setCheckable(checkable)
        if tip:
            action.setToolTip(f"{tip} ({shortcuts[0].toString()})" if shortcuts else tip)
        # Checkable: follow the state however it changes (menu, shortcut, setChecked).
        (action.toggled if checkable else action.triggered).connect(slot)
        window.addAction(action)
        made[key] = action
        return action

    act("open", "&Open image…", keys(StdKey.Open), lambda: files.open_dialog(window),
        "Open an image")
    act("save", "&Save image…", keys(StdKey.Save), lambda: files.save_dialog(window),
        "Save the canvas as PNG with its prompt and seed")
    act("gif", "Export steps as &GIF…", [], lambda: files.export_dialog(window, "gif"))
    act("frames", "Export steps as PNG &frames…", [], lambda: files.export_dialog(window, "png"))
    act("settings", "Se&ttings…", keys(StdKey.Preferences, "Ctrl+,"), window.open_settings,
        "Model, sampling, device")
    act("quit", "&Quit", keys(StdKey.Quit, "Ctrl+Q"), window.close)
    act("undo", "&Undo", keys(StdKey.Undo), doc.undo, "Undo on the canvas")
    act("redo", "&Redo", keys(StdKey.Redo, "Ctrl+Shift+Z"), doc.redo, "Redo on the canvas")
    act("paste", "&Paste image", keys(StdKey.Paste), lambda: files.paste(window),
        "Paste an image onto the canvas")
    act("clear_mask", "&Clear mask", [QKeySequence("Ctrl+Shift+X")], doc.clear_mask,
        "Clear the painted mask")
    act("new", "&New canvas", keys(StdKey.New), lambda: doc.set_image(None),
        "Empty the canvas")
    act("run", "&Run", [QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")], window.run,
        "Run the prompt")
    act("stop", "&Stop", keys(StdKey.Cancel), window.stop, "Stop the run")
    act("play", "&Play steps", [QKeySequence("Ctrl+P")], window.timeline.toggle_play)
    act("zoom_in", "Zoom &in", keys(StdKey.ZoomIn, "Ctrl+="), lambda: canvas.zoom_by(1.25))
    act("zoom_out", "Zoom &out", keys(StdKey.ZoomOut), lambda: canvas.zoom_by(0.8))
    act("fit", "&Fit", [QKeySequence("Ctrl+0")], canvas.fit, "Fit the image to the view")
    act("experts", "&Expert activity", [QKeySequence("Ctrl+E")],
        lambda: window.tabs.setCurrentWidget(window.experts))
    tools = QActionGroup(window)
    for key, text, shortcut, tip in (("brush", "Brush", "B", "Paint the area to repaint"),
                                     ("eraser", "Eraser", "E", "Erase from the mask"),
                                     ("pan", "Pan", "H", "Drag to move the view")):
        action = act(key, text, [QKeySequence(shortcut)],
                     lambda on, k=key: on and _set_tool(window, k), tip, checkable=True)
        tools.addAction(action)
    for key, text, shortcut, tip in OVERLAY_ACTIONS:
        act(f"overlay_{key}", text, [QKeySequence(shortcut)],
            lambda on, k=key: canvas.set_overlay(k, on), tip, checkable=True)
    doc.history_changed.connect(lambda: _sync_undo(doc, made))
    _menus(window, made)
    _toolbar(window, made)
    _sync_undo(doc, made)
    return made


def _menus(window: MainWindow, a: dict[str, QAction]) -> None:
    bar = window.menuBar()
    for title, names in (("&File", ["open", "save", None, "gif", "frames", None, "settings",
                                    None, "quit"]),
                         ("&Edit", ["undo", "redo", None, "paste", "new", "clear_mask"]),
                         ("&Run", ["run", "stop", None, "play"]),
                         ("&View", ["zoom_in", "zoom_out", "fit", None, "overlay_mask",
                                    "overlay_confidence", "overlay_order", "overlay_revised",
                                    None, "experts"])):
        menu = bar.addMenu(title)
        for name in names:
            if name is None:
                menu.addSeparator()
            else:
                menu.addAction(a[name])


def _toolbar(window: MainWindow, a: dict[str, QAction]) -> None:
    bar = QToolBar("Canvas")
    bar.setObjectName("canvasTools")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    a["open"].setIconText("Open")
    a["save"].setIconText("Save")
    for name in ("open", "save"):
        bar.addAction(a[name])
    bar.addSeparator()
    for name in ("brush", "eraser", "pan"):
        bar.addAction(a[name])
    window.brush_slider = slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(1, 32)
    slider.setFixedWidth(110)
    slider.setToolTip("Brush size (image pixels)")
    window.brush_label = label = QLabel()
    label.setMinimumWidth(36)
    slider.valueChanged.connect(lambda v: _set_brush(window, v))
    bar.addWidget(slider)
    bar.addWidget(label)
    bar.addAction(a["clear_mask"])
    bar.addSeparator()
    for name in ("undo", "redo", "fit"):
        bar.addAction(a[name])
    bar.addSeparator()
    overlays = QLabel("Overlays:")
    overlays.setObjectName("toolbarLabel")
    bar.addWidget(overlays)
    for key, *_ in OVERLAY_ACTIONS:
        bar.addAction(a[f"overlay_{key}"])
    bar.addSeparator()
    bar.addAction(a["settings"])
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)


def _set_tool(window: MainWindow, tool: str) -> None:
    window.canvas.tool = tool
    window.canvas.setFocus()


def _set_brush(window: MainWindow, size: int) -> None:
    window.canvas.brush_size = size
    window.brush_label.setText(f"{size} px")


def _sync_undo(doc, a: dict[str, QAction]) -> None:
    a["undo"].setEnabled(doc.can_undo)
    a["redo"].setEnabled(doc.can_redo)


def sync_tools(window: MainWindow) -> None:
    """Make the toolbar show the canvas's tool, brush size and overlays."""
    a = window.acts
    a[window.canvas.tool].setChecked(True)
    window.brush_slider.setValue(window.canvas.brush_size)
    _set_brush(window, window.canvas.brush_size)
    for key, *_ in OVERLAY_ACTIONS:
        a[f"overlay_{key}"].setChecked(key in window.canvas.overlays)
