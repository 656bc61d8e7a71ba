"""The canvas: the current picture, the inpaint brush, zoom and pan, and the live visualizer.

It shows either the document (app/ui/document.py) or one step of a run (app/ui/run_record.py):
the code-palette preview with still-masked cells hatched, plus the toggled overlays: confidence
heat map, commit order (with step numbers when cells are big enough), and cells revised by
self-correction outlined. Dropped files and image data are handed to the window as bytes
(`image_dropped`); decoding and error messages are the window's job.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from app.imageio import ImageError, decode_image
from app.ui.document import CanvasDoc
from app.ui.overlays import (
    INFERNO,
    REVISED_RGB,
    VIRIDIS,
    confidence_layer,
    mask_layer,
    order_layer,
    paint_legend,
    to_qimage,
)
from app.ui.run_record import RunRecord

OVERLAYS = ("mask", "confidence", "order", "revised")
BACKGROUND = QColor(22, 23, 27)
MASK_FILL = QColor(58, 60, 68)
MASK_HATCH = QColor(92, 96, 110)


def mime_image(mime) -> tuple[bytes, str] | None:
    """(bytes, name) of the first image in drag/paste data: a file URL or raw image data."""
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            path = url.toLocalFile()
            try:
                with open(path, "rb") as f:
                    return f.read(), path.rsplit("/", 1)[-1]
            except OSError:
                continue
    for fmt in ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif"):
        if mime.hasFormat(fmt):
            return bytes(mime.data(fmt)), "pasted image"
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            from PySide6.QtCore import QBuffer, QIODevice

            buffer = QBuffer()
            buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buffer, "PNG")
            return bytes(buffer.data()), "pasted image"
    return None


class CanvasView(QWidget):
    image_dropped = Signal(bytes, str)
    view_changed = Signal()  # zoom or what is shown

    def __init__(self, doc: CanvasDoc, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.setObjectName("canvas")
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 320)
        self.tool = "brush"  # brush | eraser | pan
        self.brush_size = 6  # radius in image pixels
        self.overlays: set[str] = {"mask"}
        self.zoom: float | None = None  # None = fit to the widget
        self.pan = QPointF(0, 0)
        self.run: RunRecord | None = None
        self.step: int | None = None  # None: the document; else a step of self.run (or final)
        self._image: QImage | None = None  # document image, cached
        self._final_cache: tuple[str, QImage] | None = None
        self._stroke_last: QPointF | None = None
        self._pan_last: QPointF | None = None
        self._cursor: QPointF | None = None
        doc.image_changed.connect(self._on_image)
        doc.mask_changed.connect(self.update)

    # ---- what is shown -------------------------------------------------------------------
    def _on_image(self) -> None:
        self._image = None if self.doc.image is None else to_qimage(self.doc.image)
        self.show_document()

    def show_document(self) -> None:
        self.run, self.step = None, None
        self.update()
        self.view_changed.emit()

    def show_run(self, run: RunRecord, step: int) -> None:
        """Step `step` of `run` (len(run.steps) = the final picture with the last overlays)."""
        self.run, self.step = run, max(0, min(step, len(run.steps)))
        self.update()
        self.view_changed.emit()

    def set_overlay(self, name: str, on: bool) -> None:
        (self.overlays.add if on else self.overlays.discard)(name)
        self.update()

    @property
    def showing_run(self) -> bool:
        return self.run is not None and self.step is not None and bool(self.run.steps)

    def _logical_size(self) -> tuple[int, int]:
        if self.showing_run:
            assert self.run is not None
            final = self._final_image(self.run)
            if final is not None:
                return final.width(), final.height()
            if self.run.grid is not None:
                return self.run.grid[1] * 4, self.run.grid[0] * 4
        if self._image is not None:
            return self._image.width(), self._image.height()
        return 64, 64

    def _final_image(self, run: RunRecord) -> QImage | None:
        if run.image_png is None:
            return None
        if self._final_cache is None or self._final_cache[0] != run.job_id:
            try:
                self._final_cache = (run.job_id, to_qimage(decode_image(run.image_png)))
            except ImageError:
                return None
        return self._final_cache[1]

    def scale(self) -> float:
        w, h = self._logical_size()
        if self.zoom is not None:
            return self.zoom
        fit = min((self.width() - 32) / w, (self.height() - 32) / h)
        return max(0.05, fit)

    def image_rect(self) -> QRectF:
        w, h = self._logical_size()
        s = self.scale()
        x = (self.width() - w * s) / 2 + self.pan.x()
        y = (self.height() - h * s) / 2 + self.pan.y()
        return QRectF(x, y, w * s, h * s)

    def to_image(self, pos: QPointF) -> QPointF:
        rect, s = self.image_rect(), self.scale()
        return QPointF((pos.x() - rect.x()) / s, (pos.y() - rect.y()) / s)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        old = self.scale()
        new = max(0.1, min(64.0, old * factor))
        anchor = anchor or QPointF(self.width() / 2, self.height() / 2)
        rect = self.image_rect()
        # Keep the image point under the anchor where it is.
        ix, iy = (anchor.x() - rect.x()) / old, (anchor.y() - rect.y()) / old
        self.zoom = new
        rect = self.image_rect()
        self.pan += QPointF(anchor.x() - (rect.x() + ix * new), anchor.y() - (rect.y() + iy * new))
        self.update()
        self.view_changed.emit()

    def fit(self) -> None:
        self.zoom, self.pan = None, QPointF(0, 0)
        self.update()
        self.view_changed.emit()

    # ---- painting ------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        rect = self.image_rect()
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        if self.showing_run:
            self._paint_run(p, rect)
        elif self._image is not None:
            p.drawImage(rect, self._image)
            if self.doc.has_mask:  # the painted inpaint mask is always shown
                p.drawImage(rect, mask_layer(self.doc.mask))
        else:
            self._paint_empty(p)
        if self._cursor is not None and self.tool in ("brush", "eraser") and not self.showing_run \
                and self._image is not None:
            radius = self.brush_size * self.scale()
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setPen(QPen(QColor(255, 255, 255, 200), 1.2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(self._cursor, radius, radius)
        p.end()

    def _paint_empty(self, p: QPainter) -> None:
        p.setPen(QColor(130, 134, 148))
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        p.setFont(font)
        p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                   "Type a prompt and press Ctrl+Enter to draw\n"
                   "or drop, paste (Ctrl+V) or open (Ctrl+O) an image")

    def _paint_run(self, p: QPainter, rect: QRectF) -> None:
        run, step = self.run, self.step
        assert run is not None and step is not None
        last = len(run.steps) - 1
        i = min(step, last)
        final = self._final_image(run) if step > last else None
        if run.grid is None:  # a text run: nothing to picture
            self._paint_empty(p)
            return
        h, w = run.grid
        if final is not None:
            p.drawImage(rect, final)
        else:
            frame = run.frame(i)
            if frame is not None:
                p.drawImage(rect, to_qimage(frame))
        cw, ch = rect.width() / w, rect.height() / h
        masked = run.masked_at(i) if final is None else None
        if masked is not None and "mask" in self.overlays and masked.size == h * w:
            brush = QBrush(MASK_HATCH, Qt.BrushStyle.BDiagPattern)
            for cell in np.flatnonzero(masked):
                r = QRectF(rect.x() + (cell % w) * cw, rect.y() + (cell // w) * ch, cw, ch)
                p.fillRect(r, MASK_FILL)
                p.fillRect(r, brush)
        if "confidence" in self.overlays:
            p.drawImage(rect, confidence_layer(run.confidence_at(i), run.grid))
        if "order" in self.overlays:
            order = run.commit_order(i)
            p.drawImage(rect, order_layer(order, run.steps[i].total, run.grid))
            if cw >= 18:
                self._paint_numbers(p, rect, order, w, cw, ch)
        if "revised" in self.overlays:
            revised = run.revised_upto(i)
            for cell in np.flatnonzero(revised >= 0):
                recent = revised[cell] == i
                p.setPen(QPen(QColor(*REVISED_RGB, 255 if recent else 150), 3 if recent else 1.5))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(QRectF(rect.x() + (cell % w) * cw + 1.5,
                                  rect.y() + (cell // w) * ch + 1.5, cw - 3, ch - 3))
        if cw >= 10 and final is None:  # the token grid, faintly
            p.setPen(QPen(QColor(255, 255, 255, 22), 1))
            for k in range(1, w):
                p.drawLine(QPointF(rect.x() + k * cw, rect.y()), QPointF(rect.x() + k * cw,
                                                                          rect.bottom()))
            for k in range(1, h):
                p.drawLine(QPointF(rect.x(), rect.y() + k * ch), QPointF(rect.right(),
                                                                         rect.y() + k * ch))
        self._paint_legends(p, run.steps[i].total)

    def _paint_legends(self, p: QPainter, total: int) -> None:
        font = QFont(self.font())
        font.setPixelSize(11)
        p.setFont(font)
        area = QRectF(self.rect())
        row = 0
        if "order" in self.overlays:
            paint_legend(p, area, row, "commit step", VIRIDIS, "1", str(total))
            row += 1
        if "confidence" in self.overlays:
            paint_legend(p, area, row, "confidence", INFERNO, "0", "1")

    def _paint_numbers(self, p, rect, order, w, cw, ch) -> None:
        font = QFont(self.font())
        font.setPixelSize(int(min(cw, ch) * 0.42))
        font.setBold(True)
        p.setFont(font)
        for cell in np.flatnonzero(order >= 0):
            r = QRectF(rect.x() + (cell % w) * cw, rect.y() + (cell // w) * ch, cw, ch)
            p.setPen(QColor(0, 0, 0, 160))
            p.drawText(r.translated(1, 1), Qt.AlignmentFlag.AlignCenter, str(order[cell] + 1))
            p.setPen(QColor(255, 255, 255, 235))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, str(order[cell] + 1))

    # ---- mouse: brush, eraser, pan, zoom -------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton) or (
                event.button() == Qt.MouseButton.LeftButton and self.tool == "pan"):
            self._pan_last = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.LeftButton and self.tool in ("brush", "eraser"):
            if self.showing_run:
                self.show_document()
            if self.doc.begin_stroke():
                self._stroke_last = self.to_image(pos)
                self._dab(self._stroke_last)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        self._cursor = pos
        if self._pan_last is not None:
            self.pan += pos - self._pan_last
            self._pan_last = pos
            self.view_changed.emit()
        elif self._stroke_last is not None:
            self._dab(self.to_image(pos))
        self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._stroke_last = None
        if self._pan_last is not None:
            self._pan_last = None
            self.unsetCursor()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._cursor = None
        self.update()

    def _dab(self, point: QPointF) -> None:
        last = self._stroke_last or point
        self.doc.paint(last.x(), last.y(), point.x(), point.y(), self.brush_size,
                       erase=self.tool == "eraser")
        self._stroke_last = point

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(1.15 ** steps, event.position())

    # ---- drag and drop -------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage() or mime.hasFormat("image/png"):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        found = mime_image(event.mimeData())
        if found is not None:
            event.acceptProposedAction()
            self.image_dropped.emit(*found)
