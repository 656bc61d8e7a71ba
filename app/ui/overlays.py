"""numpy arrays -> QImages for the canvas and the expert panel: colour maps and overlay layers.

All pictures here are tiny (a 16x16 token grid, a layers x experts table) and are scaled up by
QPainter with nearest-neighbour sampling, so building them every step costs microseconds.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter

# Perceptual anchors (matplotlib's inferno and viridis, 5 stops each).
INFERNO = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
                   dtype=np.float32)
VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
                   dtype=np.float32)
REVISED_RGB = (255, 70, 90)
INPAINT_RGBA = (150, 120, 255, 165)  # the accent violet: visible over any demo colour


def colormap(values: np.ndarray, anchors: np.ndarray = INFERNO) -> np.ndarray:
    """values in [0, 1] (any shape) -> uint8 [..., 3]."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    x = v * (len(anchors) - 1)
    lo = np.floor(x).astype(np.int64).clip(0, len(anchors) - 2)
    t = (x - lo)[..., None]
    return (anchors[lo] * (1 - t) + anchors[lo + 1] * t).round().astype(np.uint8)


def to_qimage(array: np.ndarray) -> QImage:
    """uint8 [H, W, 3] or [H, W, 4] -> a QImage that owns a copy of the pixels."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888,
           4: QImage.Format.Format_RGBA8888}[channels]
    return QImage(array.data, w, h, w * channels, fmt).copy()


def confidence_layer(confidence: np.ndarray, grid: tuple[int, int], alpha: int = 215) -> QImage:
    """Per-cell confidence as an inferno heat map; cells without a value stay transparent."""
    h, w = grid
    conf = np.asarray(confidence, dtype=np.float32).reshape(-1)
    if conf.size != h * w:
        conf = np.resize(conf, h * w)
    rgba = np.zeros((h * w, 4), dtype=np.uint8)
    known = ~np.isnan(conf)
    rgba[known, :3] = colormap(conf[known])
    rgba[known, 3] = alpha
    return to_qimage(rgba.reshape(h, w, 4))


def order_layer(order: np.ndarray, total: int, grid: tuple[int, int], alpha: int = 215) -> QImage:
    """Commit step per cell (viridis: early = purple, late = yellow); masked cells transparent."""
    h, w = grid
    order = np.asarray(order).reshape(-1)
    rgba = np.zeros((h * w, 4), dtype=np.uint8)
    done = order >= 0
    rgba[done, :3] = colormap(order[done] / max(1, total - 1), VIRIDIS)
    rgba[done, 3] = alpha
    return to_qimage(rgba.reshape(h, w, 4))


def mask_layer(mask: np.ndarray) -> QImage:
    """The painted inpaint mask as a translucent colour layer at image resolution."""
    h, w = mask.shape
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    rgba[mask] = INPAINT_RGBA
    return to_qimage(rgba)


def heat_image(counts: np.ndarray) -> QImage:
    """Expert routing counts [layers, experts] -> inferno, normalised by the largest count."""
    counts = np.asarray(counts, dtype=np.float64)
    top = counts.max() if counts.size else 0.0
    norm = counts / top if top > 0 else counts
    return to_qimage(colormap(norm))


def paint_legend(p: QPainter, anchor: QRectF, row: int, title: str, anchors: np.ndarray,
                 low: str, high: str) -> None:
    """A small colour-bar legend in the bottom-right corner of `anchor` (row 0 lowest)."""
    width, height = 210.0, 30.0
    box = QRectF(anchor.right() - width - 8, anchor.bottom() - (height + 6) * (row + 1) - 2,
                 width, height)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(16, 17, 21, 215))
    p.drawRoundedRect(box, 6, 6)
    bar = QRectF(box.x() + 8, box.y() + 18, box.width() - 16, 6)
    gradient = QLinearGradient(bar.topLeft(), bar.topRight())
    for k, rgb in enumerate(anchors):
        gradient.setColorAt(k / (len(anchors) - 1), QColor(*[int(c) for c in rgb]))
    p.fillRect(bar, gradient)
    p.setPen(QColor(200, 202, 214))
    text = QRectF(box.x() + 8, box.y() + 2, box.width() - 16, 15)
    p.drawText(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, low)
    p.drawText(text, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, title)
    p.drawText(text, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, high)
