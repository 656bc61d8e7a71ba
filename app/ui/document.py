"""The canvas document: the current image, the painted inpaint mask, and their undo history.

View state only (QtCore signals, no widgets): the canvas widget paints it and edits it through
these methods, tests drive it directly. Pixels are numpy uint8 [H, W, 3]; the mask is bool
[H, W] at image resolution, True = repaint (the worker's mask convention, app/imageio.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.imageio import encode_png

UNDO_LIMIT = 50


@dataclass
class Snapshot:
    image: np.ndarray | None
    mask: np.ndarray | None
    meta: dict = field(default_factory=dict)
    name: str = ""


class CanvasDoc(QObject):
    image_changed = Signal()
    mask_changed = Signal()
    history_changed = Signal()  # undo/redo availability

    def __init__(self) -> None:
        super().__init__()
        self.image: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.meta: dict = {}  # prompt, seed, steps, model, mode of the image (PNG text chunks)
        self.name = ""  # file name or a short description
        self._undo: list[Snapshot] = []
        self._redo: list[Snapshot] = []

    # ---- undo ----------------------------------------------------------------------------
    def _snapshot(self) -> Snapshot:
        mask = None if self.mask is None else self.mask.copy()
        return Snapshot(self.image, mask, dict(self.meta), self.name)

    def _push_undo(self) -> None:
        self._undo.append(self._snapshot())
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()
        self.history_changed.emit()

    def _restore(self, snap: Snapshot) -> None:
        image_changed = snap.image is not self.image
        self.image, self.mask, self.meta, self.name = snap.image, snap.mask, snap.meta, snap.name
        if image_changed:
            self.image_changed.emit()
        self.mask_changed.emit()
        self.history_changed.emit()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._snapshot())
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._snapshot())
        self._restore(self._redo.pop())
        return True

    # ---- image ---------------------------------------------------------------------------
    def set_image(self, image: np.ndarray | None, meta: dict | None = None, name: str = "",
                  keep_mask: bool = False) -> None:
        """Replace the picture (undoable). The mask goes unless asked to stay and still fits."""
        self._push_undo()
        self.image = None if image is None else np.ascontiguousarray(image, dtype=np.uint8)
        self.meta, self.name = dict(meta or {}), name
        if not (keep_mask and self.mask is not None and image is not None
                and self.mask.shape == image.shape[:2]):
            self.mask = None
        self.image_changed.emit()
        self.mask_changed.emit()

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) or None."""
        return None if self.image is None else (self.image.shape[1], self.image.shape[0])

    def image_png(self, extra_text: dict[str, str] | None = None) -> bytes:
        if self.image is None:
            raise ValueError("the canvas is empty")
        chunks = {k: str(v) for k, v in self.meta.items() if v is not None and v != ""}
        chunks.update(extra_text or {})
        return encode_png(self.image, chunks)

    # ---- mask ----------------------------------------------------------------------------
    @property
    def has_mask(self) -> bool:
        return self.mask is not None and bool(self.mask.any())

    def begin_stroke(self) -> bool:
        """Call once per stroke (mouse press): one undo step per stroke, not per dab."""
        if self.image is None:
            return False
        self._push_undo()
        if self.mask is None:
            self.mask = np.zeros(self.image.shape[:2], dtype=bool)
        return True

    def paint(self, x0: float, y0: float, x1: float, y1: float, radius: float,
              erase: bool = False) -> None:
        """Paint (or erase) a round brush along the segment, in image pixel coordinates."""
        if self.mask is None:
            return
        h, w = self.mask.shape
        r = max(0.5, radius)
        length = float(np.hypot(x1 - x0, y1 - y0))
        count = max(1, int(np.ceil(length / max(0.5, r / 2))) + 1)
        for t in np.linspace(0.0, 1.0, count):
            cx, cy = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            top, bottom = max(0, int(cy - r)), min(h, int(np.ceil(cy + r)) + 1)
            left, right = max(0, int(cx - r)), min(w, int(np.ceil(cx + r)) + 1)
            if top >= bottom or left >= right:
                continue
            yy, xx = np.mgrid[top:bottom, left:right]
            disc = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
            self.mask[top:bottom, left:right][disc] = not erase
        self.mask_changed.emit()

    def set_mask(self, mask: np.ndarray | None) -> None:
        self._push_undo()
        self.mask = None if mask is None else np.asarray(mask, dtype=bool).copy()
        self.mask_changed.emit()

    def clear_mask(self) -> None:
        if self.mask is not None:
            self.set_mask(None)

    def mask_png(self) -> bytes:
        if self.mask is None:
            raise ValueError("no mask painted")
        return encode_png(self.mask)
