"""Images in and out of the window: open, drop, paste, attach, save as PNG, export a run.

Every way in goes through `decode_image` (app/imageio.py), which checks format and size before
decoding, so a corrupt or hostile file only ever produces an error notice and changes nothing.
A PNG saved here carries prompt, seed, steps, model and mode in text chunks, and opening such a
PNG reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from app.imageio import ImageError, decode_image, encode_png, read_png_text
from app.ui.canvas import mime_image
from app.ui.run_record import export_gif, export_png_frames
from app.ui.state import TASK_MODE, Attachment

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif)"
META_KEYS = ("prompt", "seed", "steps", "model", "mode", "task", "cfg", "image_steps",
             "parameters", "Software")


def png_meta(data: bytes) -> dict[str, str]:
    if not data.startswith(PNG_SIGNATURE):
        return {}
    try:
        text = read_png_text(data)
    except Exception:  # text chunks are a bonus; the pixels already decoded fine
        return {}
    return {k: text[k] for k in META_KEYS if k in text}


def save_meta(meta: dict) -> dict[str, str]:
    """The text chunks a saved PNG carries (the worker's, plus the five the user relies on)."""
    out = {k: str(v) for k, v in meta.items() if k in META_KEYS and v not in (None, "")}
    if "steps" not in out and "image_steps" in out:
        out["steps"] = out["image_steps"]
    if "mode" not in out and "task" in out:
        out["mode"] = TASK_MODE.get(out["task"], out["task"])
    out.setdefault("Software", "Unmask Studio")
    return out


# ---- into the canvas -------------------------------------------------------------------------
def open_bytes(window: MainWindow, data: bytes, name: str, follow_mode: bool = True) -> bool:
    """Put an image on the canvas (undoable); a bad one only produces an error notice."""
    try:
        image = decode_image(data, name=name)
    except ImageError as exc:
        window.notice.show_notice("error", f"Cannot open that image — {exc}")
        return False
    meta = png_meta(data)
    window.state.canvas.set_image(image, meta, name=name)
    window.canvas.fit()
    if meta.get("prompt"):
        seed = f", seed {meta['seed']}" if meta.get("seed") else ""
        window.notice.show_notice("info", f"Opened {name}: made from “{meta['prompt']}”{seed}.")
        if not window.prompt.text().strip():
            window.prompt.set_text(meta["prompt"])
    if follow_mode and window.state.mode == "draw":  # a new picture in: edit it
        window.state.set_mode("edit")
    return True


def open_path(window: MainWindow, path: str | Path) -> bool:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        window.notice.show_notice("error", f"Cannot read {path}: {exc.strerror}")
        return False
    return open_bytes(window, data, path.name)


def open_dialog(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open image", "", IMAGE_FILTER)
    if path:
        open_path(window, path)


def open_stored(window: MainWindow, name: str) -> None:
    data = window.state.data.images.get(name)
    if data is None:
        window.notice.show_notice("warning", f"{name} is no longer in the images folder.")
        return
    open_bytes(window, data, name, follow_mode=False)


def open_history(window: MainWindow, entry_id: str) -> None:
    entry = window.state.history.get(entry_id)
    if entry is None:
        return
    if entry.image:
        open_stored(window, entry.image)
    else:
        window.notice.show_notice("info", f"“{entry.prompt}” → {entry.text}")


def paste(window: MainWindow) -> bool:
    found = mime_image(QGuiApplication.clipboard().mimeData())
    if found is None:
        window.notice.show_notice("info", "The clipboard holds no image.")
        return False
    return open_bytes(window, *found)


# ---- attachments ---------------------------------------------------------------------------
def attach(window: MainWindow, data: bytes, name: str) -> bool:
    try:
        image = decode_image(data, name=name)
    except ImageError as exc:
        window.notice.show_notice("error", f"Cannot attach that image — {exc}")
        return False
    window.state.attachments.add(Attachment(encode_png(image), image, name))
    return True


def attach_dialog(window: MainWindow) -> None:
    paths, _ = QFileDialog.getOpenFileNames(window, "Attach images", "", IMAGE_FILTER)
    for path in paths:
        try:
            attach(window, Path(path).read_bytes(), Path(path).name)
        except OSError as exc:
            window.notice.show_notice("error", f"Cannot read {path}: {exc.strerror}")


# ---- out -----------------------------------------------------------------------------------
def save_png(window: MainWindow, path: str | Path) -> bool:
    doc = window.state.canvas
    if doc.image is None:
        window.notice.show_notice("info", "The canvas is empty: nothing to save.")
        return False
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    try:
        path.write_bytes(encode_png(doc.image, save_meta(doc.meta)))
    except OSError as exc:
        window.notice.show_notice("error", f"Cannot save {path}: {exc.strerror}")
        return False
    window.notice.show_notice("info", f"Saved {path}")
    return True


def save_dialog(window: MainWindow) -> None:
    if window.state.canvas.image is None:
        window.notice.show_notice("info", "The canvas is empty: nothing to save.")
        return
    suggestion = (window.state.canvas.meta.get("prompt") or "unmask")[:40].replace(" ", "_")
    path, _ = QFileDialog.getSaveFileName(window, "Save image", f"{suggestion}.png",
                                          "PNG image (*.png)")
    if path:
        save_png(window, path)


def export_run(window: MainWindow, kind: str, path: str | Path) -> int:
    """Write the timeline's run as an animated GIF (kind "gif") or PNG frames into a folder."""
    run = window.timeline.run
    if run is None or run.grid is None or not run.steps:
        window.notice.show_notice("info", "Run an image prompt first: there are no steps to "
                                          "export.")
        return 0
    try:
        if kind == "gif":
            count = export_gif(run, Path(path), fps=window.timeline.fps)
        else:
            count = export_png_frames(run, Path(path))
    except (OSError, ValueError) as exc:
        window.notice.show_notice("error", f"Export failed: {exc}")
        return 0
    window.notice.show_notice("info", f"Exported {count} frames to {path}")
    return count


def export_dialog(window: MainWindow, kind: str) -> None:
    if kind == "gif":
        path, _ = QFileDialog.getSaveFileName(window, "Export steps as GIF", "unmask-steps.gif",
                                              "Animated GIF (*.gif)")
    else:
        path = QFileDialog.getExistingDirectory(window, "Export steps as PNG frames")
    if path:
        export_run(window, kind, path)
