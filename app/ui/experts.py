"""Expert activity: a layers x experts heat map of how many tokens the router sent to each expert.

Scopes: the step on the timeline, the whole run up to it, or the session so far split by token
kind. Per-token kinds are not reported by the worker, so the split is by job: text jobs (ask,
chat) versus image jobs (draw, edit, inpaint).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.ui.overlays import INFERNO, heat_image
from app.ui.run_record import RunRecord
from app.ui.state import AppState

SCOPES = (("step", "This step"), ("run", "Whole run"))


class HeatMap(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 180)
        self.counts: np.ndarray | None = None

    def set_counts(self, counts: np.ndarray | None) -> None:
        self.counts = None if counts is None else np.asarray(counts)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(28, 29, 34))
        counts = self.counts
        if counts is None or counts.ndim != 2 or counts.size == 0:
            p.setPen(QColor(110, 114, 128))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       "Expert routing appears here during a run")
            p.end()
            return
        layers, experts = counts.shape
        font = QFont(self.font())
        font.setPixelSize(11)
        p.setFont(font)
        left, top, right, bottom = 34, 20, 60, 10
        cell = min((self.width() - left - right) / experts, (self.height() - top - bottom) / layers)
        grid = QRectF(left, top, cell * experts, cell * layers)
        p.drawImage(grid, heat_image(counts))
        if cell >= 30:  # big enough to print the counts
            top_count = max(1, int(counts.max()))
            for (layer, expert), value in np.ndenumerate(counts):
                p.setPen(QColor(20, 20, 24) if value > 0.55 * top_count else QColor(230, 230, 236))
                p.drawText(QRectF(left + expert * cell, top + layer * cell, cell, cell),
                           Qt.AlignmentFlag.AlignCenter, f"{int(value)}")
        p.setPen(QColor(28, 29, 34))
        for k in range(1, experts):
            p.drawLine(grid.x() + k * cell, grid.top(), grid.x() + k * cell, grid.bottom())
        for k in range(1, layers):
            p.drawLine(grid.left(), grid.y() + k * cell, grid.right(), grid.y() + k * cell)
        p.setPen(QColor(160, 164, 178))
        for k in range(layers):
            p.drawText(QRectF(0, top + k * cell, left - 4, cell),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"L{k + 1}")
        step = max(1, int(np.ceil(18 / cell)))
        for k in range(0, experts, step):
            p.drawText(QRectF(left + k * cell, 0, cell * step, top - 2),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, f"E{k}")
        bar = QRectF(grid.right() + 12, grid.top(), 10, grid.height())
        gradient = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        for k, rgb in enumerate(INFERNO):
            gradient.setColorAt(k / (len(INFERNO) - 1), QColor(*[int(c) for c in rgb]))
        p.fillRect(bar, gradient)
        p.drawText(QRectF(bar.right() + 3, bar.top() - 2, 56, 14), Qt.AlignmentFlag.AlignLeft,
                   f"{int(counts.max())}")
        p.drawText(QRectF(bar.right() + 3, bar.bottom() - 12, 56, 14), Qt.AlignmentFlag.AlignLeft,
                   "0")
        p.end()


def summarize(counts: np.ndarray | None) -> str:
    if counts is None or np.asarray(counts).sum() == 0:
        return "No routing data yet."
    counts = np.asarray(counts, dtype=np.float64)
    layer, expert = np.unravel_index(int(counts.argmax()), counts.shape)
    share = counts[layer, expert] / max(1.0, counts[layer].sum())
    mean = counts.mean(axis=1, keepdims=True)
    imbalance = float(np.max(counts / np.where(mean > 0, mean, 1)))
    idle = int((counts == 0).sum())
    return (f"{int(counts.sum()):,} token-expert routings · busiest: layer {layer + 1}, "
            f"expert {expert} ({share:.0%} of its layer) · max/mean load {imbalance:.1f}× · "
            f"{idle} idle expert slot{'s' if idle != 1 else ''}")


class ExpertPanel(QWidget):
    """The run on the timeline (this step / whole run), and below it the session split by token
    kind: text jobs beside image jobs, so the experts each modality prefers stand out."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setObjectName("experts")
        self.run: RunRecord | None = None
        self.step: int | None = None
        self.scope = QComboBox(toolTip="Which routing of the run to show")
        for key, label in SCOPES:
            self.scope.addItem(label, key)
        self.scope.setCurrentIndex(1)
        self.scope.currentIndexChanged.connect(self.refresh)
        self.title = QLabel()
        self.title.setObjectName("panelTitle")
        self.heat = HeatMap()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setObjectName("hint")
        session = QLabel("Session by token kind")
        session.setObjectName("panelTitle")
        self.text_map, self.image_map = HeatMap(), HeatMap()
        self.text_label, self.image_label = QLabel(), QLabel()
        split = QHBoxLayout()
        for label, heat in ((self.text_label, self.text_map), (self.image_label, self.image_map)):
            label.setObjectName("hint")
            column = QVBoxLayout()
            column.addWidget(label)
            column.addWidget(heat, 1)
            split.addLayout(column)
        row = QHBoxLayout()
        row.addWidget(self.title, 1)
        row.addWidget(self.scope)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(row)
        layout.addWidget(self.heat, 3)
        layout.addWidget(self.summary)
        layout.addSpacing(8)
        layout.addWidget(session)
        layout.addLayout(split, 2)
        self.refresh()

    def set_scope(self, scope: str) -> None:
        self.scope.setCurrentIndex(next(k for k, (key, _) in enumerate(SCOPES) if key == scope))
        self.refresh()

    def show_run(self, run: RunRecord | None, step: int | None = None) -> None:
        self.run, self.step = run, step
        self.refresh()

    def current_counts(self) -> np.ndarray | None:
        run = self.run
        if run is None or not run.steps:
            return None if run is None else run.activity
        step = len(run.steps) - 1 if self.step is None else min(self.step, len(run.steps) - 1)
        return run.expert_counts(step, self.scope.currentData())

    def refresh(self) -> None:
        counts = self.current_counts()
        run = self.run
        if run is None:
            self.title.setText("No run yet")
        else:
            kind = "text job" if run.kind == "text" else "image job"
            shown = len(run.steps) if self.step is None else min(self.step + 1, len(run.steps))
            where = "up to step" if self.scope.currentData() == "run" else "step"
            prompt = run.prompt if len(run.prompt) <= 24 else run.prompt[:23] + "…"
            self.title.setText(f"{run.task} ({kind}) · {where} {shown} · “{prompt}”")
        self.heat.set_counts(counts)
        self.summary.setText(summarize(counts))
        for kind, label, heat in (("text", self.text_label, self.text_map),
                                  ("image", self.image_label, self.image_map)):
            session = self.state.session_experts.get(kind)
            total = 0 if session is None else int(session.sum())
            label.setText(f"{kind.capitalize()} jobs · {total:,} routings")
            heat.set_counts(session)
