import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from app.engine.codecs import PatchVQCodec, train_patch_vq

COLORS = np.array([(230, 40, 40), (40, 90, 220), (245, 245, 245), (20, 20, 20), (50, 170, 70)],
                  dtype=np.uint8)


def synthetic_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Flat background plus a rectangle and a disc in other colours (no anti-aliasing)."""
    bg, a, b = rng.choice(len(COLORS), size=3, replace=False)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = COLORS[bg]
    y0, x0 = rng.integers(0, size - 16, size=2)
    h, w = rng.integers(4, 16, size=2)
    img[y0:y0 + h, x0:x0 + w] = COLORS[a]
    cy, cx = rng.integers(8, size - 8, size=2)
    r = rng.integers(3, 8)
    yy, xx = np.mgrid[0:size, 0:size]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = COLORS[b]
    return img


def to_patches(images: np.ndarray, p: int = 4) -> np.ndarray:
    n, h, w, _ = images.shape
    return images.reshape(n, h // p, p, w // p, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, 48)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([synthetic_image(rng) for _ in range(60)])


@pytest.fixture(scope="module")
def big_codec(images) -> PatchVQCodec:
    """Codebook larger than the number of distinct patches: lossless on them."""
    return train_patch_vq(to_patches(images), num_codes=1024, seed=0, iters=10,
                          snap_colors=COLORS)


@pytest.fixture(scope="module")
def small_codec(images) -> PatchVQCodec:
    """Codebook smaller than the number of distinct patches: k-means path."""
    return train_patch_vq(to_patches(images), num_codes=256, seed=0, iters=15,
                          snap_colors=COLORS)


def test_lossless_when_codebook_covers_all_patches(big_codec, images):
    n_unique = len(np.unique(to_patches(images), axis=0))
    assert n_unique < big_codec.num_codes
    codes = big_codec.encode(images[0])
    assert codes.shape == (16, 16) and codes.dtype == np.int64
    assert np.array_equal(big_codec.decode(codes), images[0])
    assert np.array_equal(big_codec.decode(big_codec.encode(images)), images)  # batched


def test_near_lossless_with_a_small_codebook(small_codec, images):
    assert len(np.unique(to_patches(images), axis=0)) > small_codec.num_codes
    decoded = small_codec.decode(small_codec.encode(images))
    wrong = (decoded != images).any(-1).mean()
    assert wrong < 0.01
    # decoded pixels are snapped: only palette colours appear
    assert {tuple(c) for c in decoded.reshape(-1, 3)} <= {tuple(c) for c in COLORS}


def test_flat_palette_patches_are_exact_even_if_unseen(small_codec):
    for color in COLORS:
        flat = np.empty((8, 8, 3), dtype=np.uint8)
        flat[:] = color
        assert np.array_equal(small_codec.decode(small_codec.encode(flat)), flat)


def test_fresh_images_round_trip_nearly(small_codec):
    rng = np.random.default_rng(99)
    fresh = np.stack([synthetic_image(rng) for _ in range(10)])
    decoded = small_codec.decode(small_codec.encode(fresh))
    assert (decoded != fresh).any(-1).mean() < 0.02


def test_palette_and_preview(small_codec, images):
    palette = small_codec.palette
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    grid = small_codec.encode(images[0])
    preview = small_codec.preview(grid)
    assert preview.shape == (16, 16, 3) and preview.dtype == np.uint8
    # a flat 4x4 patch previews as its own colour
    flat_cells = (images[0].reshape(16, 4, 16, 4, 3) == images[0][0, 0]).all(axis=(1, 3, 4))
    assert (preview[flat_cells] == images[0][0, 0]).all()


def test_deterministic_training(images):
    a = train_patch_vq(to_patches(images), num_codes=128, seed=3, iters=5)
    b = train_patch_vq(to_patches(images), num_codes=128, seed=3, iters=5)
    assert np.array_equal(a.centroids, b.centroids)
    assert a.centroids.shape == (128, 48) and a.centroids.dtype == np.float32
    assert a.snap_colors is None


def test_input_validation(small_codec):
    with pytest.raises(ValueError, match="63x64"):
        small_codec.encode(np.zeros((63, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        small_codec.encode(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        small_codec.decode(np.full((16, 16), 256))
    with pytest.raises(ValueError):
        small_codec.decode(np.zeros((16, 16), dtype=np.float32))
    with pytest.raises(ValueError):
        train_patch_vq(np.zeros((10, 47), dtype=np.uint8), num_codes=8, seed=0, iters=1)
    with pytest.raises(ValueError):
        train_patch_vq(np.zeros((10, 48), dtype=np.float32), num_codes=8, seed=0, iters=1)


def test_save_load_round_trip(small_codec, images, tmp_path):
    small_codec.save(tmp_path / "codec")
    config = json.loads((tmp_path / "codec" / "config.json").read_text())
    assert config == {"codec": "patch_vq", "patch_size": 4, "num_codes": 256, "image_size": 64}
    loaded = PatchVQCodec.load(tmp_path / "codec")
    assert np.array_equal(loaded.centroids, small_codec.centroids)
    assert np.array_equal(loaded.snap_colors, small_codec.snap_colors)
    assert np.array_equal(loaded.encode(images), small_codec.encode(images))
    assert np.array_equal(loaded.decode(loaded.encode(images[0])),
                          small_codec.decode(small_codec.encode(images[0])))


def test_load_errors_name_the_file_and_tensor(small_codec, tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        PatchVQCodec.load(tmp_path / "nowhere")
    folder = tmp_path / "codec"
    small_codec.save(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        PatchVQCodec.load(folder)
    save_file({"centroids": np.zeros((10, 48), np.float32)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors.*'centroids'"):
        PatchVQCodec.load(folder)
    save_file({"other": np.zeros((256, 48), np.float32)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors.*'centroids' missing"):
        PatchVQCodec.load(folder)
    save_file({"centroids": np.zeros((256, 48), np.float32),
               "snap_colors": np.zeros((5, 4), np.uint8)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="'snap_colors'"):
        PatchVQCodec.load(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        PatchVQCodec.load(folder)
    (folder / "config.json").write_text('{"codec": "other"}')
    with pytest.raises(ValueError, match="config.json"):
        PatchVQCodec.load(folder)
