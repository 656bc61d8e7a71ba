"""Image bytes <-> numpy arrays for the worker and the CLI (numpy + pillow only, no torch).

Untrusted bytes (a dropped file, a pasted clipboard image) are checked before they are decoded:
PIL's `Image.open` only reads the header, so the size is known before any pixel memory is
allocated, and a 20000x20000 "image" is refused without a memory spike.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 4096 * 4096
# Formats a user plausibly drops on the canvas; anything else PIL could open is refused so rarely
# exercised (and historically fragile) decoders are never fed untrusted bytes.
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


class ImageError(ValueError):
    """Image bytes cannot be used; the message names the image and says why."""


def _open(data: bytes, max_pixels: int, name: str) -> Image.Image:
    """Open, check format and size from the header, then decode the pixels."""
    if not data:
        raise ImageError(f"{name}: no image data (empty file)")
    try:
        with warnings.catch_warnings():
            # PIL warns (not raises) between its own limit and twice that; we have a stricter one.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: far too large to open ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name}: not a readable image (corrupt, or not PNG/JPEG/WebP/BMP/GIF)"
        ) from exc
    except Exception as exc:  # PIL raises assorted OSError/ValueError/SyntaxError on bad headers
        raise ImageError(f"{name}: corrupt image header ({exc})") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(f"{name}: {image.format} images are not supported; use PNG or JPEG")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: the header claims an empty {width}x{height} image")
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
            f"{max_pixels / 1e6:.0f} megapixel limit: scale it down and try again"
        )
    try:
        image.seek(0)  # animated GIF/PNG: the first frame
        image.load()
    except Exception as exc:  # truncated data, bad CRC, broken compressed stream, ...
        raise ImageError(f"{name}: corrupt or truncated image data ({exc})") from exc
    # Phone photos store their rotation in EXIF; without this they would appear sideways.
    with contextlib.suppress(Exception):  # a broken EXIF block is no reason to refuse pixels
        image = ImageOps.exif_transpose(image)
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """uint8 [H, W, 3]; transparency composited over `background`, 16-bit scaled to 8-bit."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale PNGs decode to these modes; PIL's own convert would clip at 255.
        grey = np.asarray(image, dtype=np.float64) / 257.0
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        image = canvas
    return np.array(image.convert("RGB"), dtype=np.uint8)


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
) -> np.ndarray:
    """PNG/JPEG/... bytes -> uint8 [H, W, 3]; alpha composited on white. Raises ImageError."""
    return _to_rgb(_open(data, max_pixels, name), (255, 255, 255))


def decode_mask(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "mask"
) -> np.ndarray:
    """Mask bytes -> bool [H, W], True = repaint (white). Transparent pixels count as black
    (keep), so a painted stroke layer with a transparent background works as a mask."""
    rgb = _to_rgb(_open(data, max_pixels, name), (0, 0, 0)).astype(np.uint32)
    # ITU-R 601 luma, integer form: bright strokes of any colour mean "repaint".
    luma = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]) // 1000
    return luma >= 128


def encode_png(array: np.ndarray, text_chunks: dict[str, str] | None = None) -> bytes:
    """uint8 [H, W, 3] / [H, W, 4] / [H, W] (or bool [H, W]) -> PNG bytes.

    text_chunks go into tEXt (or iTXt when not Latin-1) chunks: prompt, seed, steps, model... so
    a saved image remembers exactly how to reproduce it.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"encode_png needs [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    info = PngImagePlugin.PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_text(str(key), str(value))  # PIL switches to iTXt for non-Latin-1 values
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def read_png_text(data: bytes) -> dict[str, str]:
    """The text chunks of PNG bytes (what encode_png wrote)."""
    with Image.open(io.BytesIO(data)) as image:
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}

