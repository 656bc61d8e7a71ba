"""The step timeline under the canvas: scrub, play/pause, speed, export as GIF or PNG frames.

A bar per step shows how many tokens that step committed (tall bars = the model was sure of many
cells at once), with revisions in red; the last slot is the final decode. Click or drag to scrub,
arrow keys step, Space plays.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QWidget,
)

from app.ui.run_record import RunRecord

ACCENT = QColor(140, 110, 255)
BAR = QColor(96, 100, 118)
BAR_VIEWED = QColor(170, 160, 230)
REVISED = QColor(255, 70, 90)
SPEEDS = (("0.5×", 4.0), ("1×", 8.0), ("2×", 16.0), ("4×", 32.0))


class StepBar(QWidget):
    """One slot per planned step plus one for the final decode; steps not run yet are outlines."""

    scrubbed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(44)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.counts: list[int] = []
        self.revised: list[int] = []
        self.total = 0  # planned steps
        self.slots = 0  # selectable: the steps so far (+ the final decode once it is there)
        self.position = 0
        self.final = False

    def set_data(self, counts: list[int], revised: list[int], final: bool, total: int) -> None:
        self.counts, self.revised, self.final = counts, revised, final
        self.total = max(total, len(counts))
        self.slots = len(counts) + (1 if final else 0)
        self.update()

    @property
    def drawn(self) -> int:
        return self.total + 1 if self.total else 0

    def _slot_rect(self, i: int) -> QRectF:
        width = (self.width() - 8) / max(1, self.drawn)
        return QRectF(4 + i * width, 4, width, self.height() - 8)

    def _drawn_index(self, position: int) -> int:
        return self.drawn - 1 if self.final and position >= len(self.counts) else position

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), QColor(28, 29, 34))
        if not self.drawn:
            p.setPen(QColor(110, 114, 128))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Steps appear here while the model unmasks")
            p.end()
            return
        top = max(self.counts, default=1) or 1
        for i in range(self.drawn):
            r = self._slot_rect(i)
            gap = 1.0 if r.width() > 4 else 0.0
            if i < len(self.counts):
                hgt = max(2.0, r.height() * self.counts[i] / top)
                bar = QRectF(r.x() + gap, r.bottom() - hgt, r.width() - 2 * gap, hgt)
                p.fillRect(bar, BAR_VIEWED if i <= self.position else BAR)
                if self.revised[i]:
                    p.fillRect(QRectF(bar.x(), r.bottom() - 3, bar.width(), 3), REVISED)
            elif i == self.drawn - 1:  # the final decode
                p.setPen(QPen(ACCENT if self.final else QColor(70, 72, 84), 1.5))
                p.setBrush(QColor(140, 110, 255, 60) if self.final else Qt.BrushStyle.NoBrush)
                p.drawRoundedRect(r.adjusted(gap + 1, 1, -gap - 1, -1), 3, 3)
            else:  # planned, not run (yet)
                p.fillRect(QRectF(r.x() + gap, r.bottom() - 2, r.width() - 2 * gap, 2),
                           QColor(60, 62, 72))
        if self.slots:
            head = self._slot_rect(self._drawn_index(min(self.position, self.slots - 1)))
            p.setPen(QPen(ACCENT, 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(head.adjusted(0, -2, 0, 2), 3, 3)
        p.end()

    def _pick(self, x: float) -> None:
        if not self.slots:
            return
        width = (self.width() - 8) / self.drawn
        index = max(0, min(self.drawn - 1, int((x - 4) // width)))
        if index == self.drawn - 1 and self.final:
            index = len(self.counts)
        self.scrubbed.emit(min(index, self.slots - 1))

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._pick(event.position().x())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._pick(event.position().x())


class Timeline(QWidget):
    step_changed = Signal(int)  # a slot index: 0..steps-1, steps = the final decode
    export_requested = Signal(str)  # "gif" | "png"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timeline")
        self.run: RunRecord | None = None
        self.position = 0
        self.bar = StepBar(self)
        self.bar.scrubbed.connect(self.set_step)
        self.play_button = QToolButton(text="▶", toolTip="Play / pause the steps (Space)")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._toggle_play)
        self.speed = QComboBox(toolTip="Playback speed")
        for label, fps in SPEEDS:
            self.speed.addItem(label, fps)
        self.speed.setCurrentIndex(1)
        self.speed.currentIndexChanged.connect(self._update_interval)
        # The self-check's drawings (a run that redrew): the kept one, or one it redrew.
        self.drawing = QComboBox(toolTip="The self-check's drawings: scrub the kept one or one "
                                         "the model misread and drew again")
        self.drawing.setVisible(False)
        self.drawing.activated.connect(self._pick_drawing)
        self.label = QLabel("no run yet")
        self.label.setObjectName("stepLabel")
        self.label.setMinimumWidth(120)
        self.gif_button = QToolButton(text="GIF", toolTip="Export the steps as an animated GIF")
        self.png_button = QToolButton(text="PNGs", toolTip="Export every step as PNG frames")
        self.gif_button.clicked.connect(lambda: self.export_requested.emit("gif"))
        self.png_button.clicked.connect(lambda: self.export_requested.emit("png"))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.play_button)
        layout.addWidget(self.speed)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.drawing)
        layout.addWidget(self.label)
        layout.addWidget(self.gif_button)
        layout.addWidget(self.png_button)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._advance)
        self._update_interval()
        self._sync()

    @property
    def count(self) -> int:
        """Slots: every step, plus the final decode once it is there."""
        return self.bar.slots

    def set_run(self, run: RunRecord | None, follow: bool = True) -> None:
        self.run = run
        self.refresh(follow)

    def refresh(self, follow: bool = True) -> None:
        """The run gained steps or finished; `follow` moves the playhead to the newest."""
        run = self.run
        if run is None:
            self.bar.set_data([], [], False, 0)
        else:
            revised = [int(s.revised.size) for s in run.steps]
            final = run.state == "done" and (run.image_png is not None or run.kind == "text") \
                and run.attempt == run.kept_attempt  # a redrawn drawing has no final decode
            total = run.steps[-1].total if run.steps else 0
            if run.finished:
                total = len(run.steps)  # a stopped run keeps only what it did
            self.bar.set_data(run.committed_per_step(), revised, final and bool(run.steps), total)
        self._list_drawings()
        if follow and self.count:
            self.position = self.count - 1
        self.position = max(0, min(self.position, max(0, self.count - 1)))
        self.bar.position = self.position
        self._sync()

    def _list_drawings(self) -> None:
        choices = self.run.drawing_choices() if self.run is not None and self.run.finished \
            else []
        self.drawing.setVisible(len(choices) > 1)
        self.drawing.clear()
        for attempt, label, read in choices:
            self.drawing.addItem(label, attempt)
            self.drawing.setItemData(self.drawing.count() - 1, read, Qt.ItemDataRole.ToolTipRole)
        if choices:
            self.drawing.setCurrentIndex(max(0, self.drawing.findData(self.run.attempt)))

    def _pick_drawing(self, index: int) -> None:
        if self.run is None or index < 0:
            return
        self.run.show_drawing(int(self.drawing.itemData(index)))
        self.refresh(follow=True)
        self.step_changed.emit(self.position)

    def set_step(self, index: int) -> None:
        if not self.count:
            return
        index = max(0, min(index, self.count - 1))
        self.position = self.bar.position = index
        self.bar.update()
        self._sync()
        self.step_changed.emit(index)

    def _sync(self) -> None:
        run, has = self.run, self.count > 0
        for w in (self.play_button, self.bar):
            w.setEnabled(has)
        exportable = has and run is not None and run.grid is not None and run.finished
        self.gif_button.setEnabled(exportable)
        self.png_button.setEnabled(exportable)
        if run is None or not has:
            self.label.setText("no run yet")
        elif self.bar.final and self.position == self.count - 1:
            self.label.setText(f"final · {len(run.steps)} steps")
        else:
            total = run.steps[self.position].total if run.steps else 0
            self.label.setText(f"step {self.position + 1} / {total}")

    # ---- playback ------------------------------------------------------------------------
    def _update_interval(self) -> None:
        self.timer.setInterval(int(1000 / float(self.speed.currentData())))

    def set_fps(self, fps: float) -> None:
        best = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k][1] - fps))
        self.speed.setCurrentIndex(best)

    @property
    def fps(self) -> float:
        return float(self.speed.currentData())

    def _toggle_play(self, playing: bool) -> None:
        self.play_button.setText("⏸" if playing else "▶")
        if playing:
            if self.position >= self.count - 1:
                self.set_step(0)
            self.timer.start()
        else:
            self.timer.stop()

    def toggle_play(self) -> None:
        self.play_button.setChecked(not self.play_button.isChecked())

    def _advance(self) -> None:
        if self.position >= self.count - 1:
            self.play_button.setChecked(False)
        else:
            self.set_step(self.position + 1)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if key == Qt.Key.Key_Left:
            self.set_step(self.position - 1)
        elif key == Qt.Key.Key_Right:
            self.set_step(self.position + 1)
        elif key == Qt.Key.Key_Space:
            self.toggle_play()
        else:
            super().keyPressEvent(event)
