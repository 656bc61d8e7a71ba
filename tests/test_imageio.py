"""Untrusted image bytes -> arrays (app/imageio.py): checked before decoded, clear errors."""

from __future__ import annotations

import io
import resource
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app.imageio import ImageError, decode_image, decode_mask, encode_png, read_png_text


def saved(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black
    out = decode_image(saved(Image.fromarray(rgba, "RGBA")))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert 120 <= out[1, 0, 0] <= 135


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "CMYK"])
def test_other_modes_become_rgb(mode):
    image = Image.new("RGB", (3, 2), (10, 200, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(saved(image, fmt))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8


def test_palette_transparency_and_16_bit_grey():
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0])
    pal.putpixel((1, 0), 1)
    out = decode_image(saved(pal, transparency=1))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (255, 255, 255)
    grey16 = Image.fromarray(np.array([[0, 65535]], np.uint16))
    out = decode_image(saved(grey16))
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 1]) == (255, 255, 255)


def test_jpeg_and_exif_rotation():
    image = Image.new("RGB", (4, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = decode_image(saved(image, "JPEG", exif=exif))
    assert out.shape == (4, 2, 3)  # shown upright, as the phone meant it


@pytest.mark.parametrize("data, phrase", [
    (b"", "empty"),
    (b"\xff\xd8\xff\xe0 junk", "corrupt image header"),
    (b"GIF89a garbage", "not a readable image"),
    (b"plain text, not an image", "not a readable image"),
])
def test_unreadable_bytes_raise_image_error_naming_the_image(data, phrase):
    with pytest.raises(ImageError, match=phrase) as err:
        decode_image(data, name="photo.png")
    assert "photo.png" in str(err.value)


def test_truncated_data_is_refused():
    data = saved(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_unsupported_format_is_refused():
    with pytest.raises(ImageError, match="TIFF images are not supported"):
        decode_image(saved(Image.new("RGB", (2, 2)), "TIFF"))


def test_huge_images_are_refused_from_the_header_without_allocating():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError, match="too large"):
        decode_image(png_claiming(20000, 20000))
    with pytest.raises(ImageError, match="5000x5000"):
        decode_image(png_claiming(5000, 5000))
    with pytest.raises(ImageError, match="over the 0 megapixel limit"):
        decode_image(saved(Image.new("RGB", (30, 30))), max_pixels=100)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50  # a decode would have needed 1.2 GB


def test_mask_white_repaints_and_transparent_keeps():
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)  # white: repaint
    rgba[0, 1] = (255, 255, 255, 0)  # transparent: keep
    rgba[0, 2] = (0, 0, 0, 255)  # black: keep
    assert decode_mask(saved(Image.fromarray(rgba, "RGBA"))).tolist() == [[True, False, False]]
    with pytest.raises(ImageError, match="the mask"):
        decode_mask(b"junk", name="the mask")


def test_encode_png_checks_its_input_and_keeps_text():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W"):
        encode_png(np.zeros((2, 2, 2), np.uint8))
    data = encode_png(np.array([[True, False]]), {"seed": "1"})
    assert decode_mask(data).tolist() == [[True, False]] and read_png_text(data) == {"seed": "1"}


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 17), st.integers(1, 17), st.integers(0, 2**32 - 1))
def test_png_round_trip_is_lossless(height, width, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    assert np.array_equal(decode_image(encode_png(pixels)), pixels)
