"""Render the app icon from its SVG into the PNG, ICO and ICNS files the app and installers use.

    .venv/bin/python scripts/render_icons.py

Reads resources/icons/unmask-studio.svg and writes, next to it:
    unmask-studio-{16,32,48,64,128,256,512}.png   window icon, Linux hicolor theme
    unmask-studio.ico                             Windows (exe and installer), 16..256
    unmask-studio.icns                            macOS .app bundle
The outputs are committed, so building a release never needs this script; re-run it after
editing the SVG. Rendering uses Qt's own SVG renderer (QSvgRenderer), offscreen.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / "unmask-studio.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 32, 48, 64, 128, 256)  # 256 is the largest size an .ico entry can hold
ICNS_SIZES = (16, 32, 64, 128, 256, 512)


def png_path(size: int) -> Path:
    return ICONS / f"unmask-studio-{size}.png"


def render_png(renderer, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
    from PySide6.QtGui import QImage, QPainter

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise RuntimeError(f"Qt could not encode the {size}px icon as PNG")
    return bytes(data.data())


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed
    from PIL import Image
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"render_icons: {SVG} is not a valid SVG for Qt", file=sys.stderr)
        return 1
    images: dict[int, Image.Image] = {}
    for size in PNG_SIZES:
        data = render_png(renderer, size)
        png_path(size).write_bytes(data)
        images[size] = Image.open(io.BytesIO(data)).convert("RGBA")
        print(f"wrote {png_path(size).relative_to(ROOT)}")
    # Each .ico/.icns entry gets its own rendering (append_images), not a downscale of the largest,
    # so the small sizes stay crisp.
    largest = images[max(ICO_SIZES)]
    largest.save(ICONS / "unmask-studio.ico", format="ICO",
                 sizes=[(s, s) for s in ICO_SIZES],
                 append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    print(f"wrote {(ICONS / 'unmask-studio.ico').relative_to(ROOT)}")
    images[512].save(ICONS / "unmask-studio.icns", format="ICNS",
                     append_images=[images[s] for s in ICNS_SIZES if s != 512])
    print(f"wrote {(ICONS / 'unmask-studio.icns').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
