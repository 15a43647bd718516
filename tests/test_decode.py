"""Tests for foveal.data.decode: every Pillow mode to sane RGB, EXIF orientation, bad files, bombs."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from synthetic import png_claiming_size

from foveal.data.decode import (
    BACKGROUND,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_ASPECT_RATIO,
    ImageDecodeError,
    decode_image,
    is_image_file,
    load_rgb,
    resize_and_crop,
)
from foveal.errors import ConfigError, DataError

WHITE = list(BACKGROUND)


def _save(path: Path, image: Image.Image, **options: object) -> Path:
    """Save `image` to `path` (format from the extension) and return the path."""
    image.save(path, **options)
    return path


def _pixels(path: Path | bytes, size: int | None = None) -> np.ndarray:
    """Decode to an (H, W, 3) int array, checking the tensor contract on the way."""
    tensor = decode_image(path, size)
    assert tensor.dtype == torch.uint8
    assert tensor.ndim == 3 and tensor.shape[0] == 3
    assert tensor.is_contiguous()
    return tensor.permute(1, 2, 0).numpy().astype(int)


def _palette_image(indices: list[list[int]]) -> Image.Image:
    """A P image with palette 0 black, 1 red, 2 green, 3 blue."""
    image = Image.fromarray(np.array(indices, dtype=np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    return image


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """An incompressible RGB image, so that cutting its file short loses pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- modes -------------------------------------------------------------------------------------------


def test_rgb_png_is_exact(tmp_path: Path) -> None:
    array = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [12, 34, 56]]], dtype=np.uint8)
    pixels = _pixels(_save(tmp_path / "a.png", Image.fromarray(array, "RGB")))
    assert pixels.tolist() == array.tolist()


def test_grey_l(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8), "L")
    pixels = _pixels(_save(tmp_path / "a.png", image))
    assert pixels.tolist() == [[[0] * 3, [77] * 3, [255] * 3]]


def test_one_bit(tmp_path: Path) -> None:
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    for name in ("a.png", "a.bmp", "a.tif"):
        assert _pixels(_save(tmp_path / name, image)).tolist() == [[[0] * 3, [255] * 3]], name


def test_la_transparent_pixel_becomes_background(tmp_path: Path) -> None:
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (50, 0))  # fully transparent dark grey
    image.putpixel((1, 0), (50, 255))  # opaque
    assert image.mode == "LA"
    assert _pixels(_save(tmp_path / "a.png", image)).tolist() == [[WHITE, [50] * 3]]


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # transparent red: its hidden colour must not show
    image.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black: mid grey
    image.putpixel((2, 0), (0, 0, 255, 255))  # opaque blue
    pixels = _pixels(_save(tmp_path / "a.png", image))
    assert pixels[0, 0].tolist() == WHITE
    assert np.all(np.abs(pixels[0, 1] - 127) <= 1)
    assert pixels[0, 2].tolist() == [0, 0, 255]


def test_palette_without_transparency(tmp_path: Path) -> None:
    pixels = _pixels(_save(tmp_path / "a.png", _palette_image([[1, 2, 3]])))
    assert pixels.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]


@pytest.mark.parametrize("name", ["a.png", "a.gif"])
def test_palette_transparency_index_becomes_white(tmp_path: Path, name: str) -> None:
    path = _save(tmp_path / name, _palette_image([[1, 3, 2]]), transparency=3)
    assert Image.open(path).mode == "P"
    assert _pixels(path).tolist() == [[[255, 0, 0], WHITE, [0, 255, 0]]]


def test_rgb_trns_colour_key_becomes_white(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[[10, 20, 30], [1, 2, 3]]], dtype=np.uint8), "RGB")
    path = _save(tmp_path / "a.png", image, transparency=(10, 20, 30))
    assert _pixels(path).tolist() == [[WHITE, [1, 2, 3]]]


def test_cmyk_tiff_pure_cyan(tmp_path: Path) -> None:
    image = Image.new("CMYK", (2, 2), (255, 0, 0, 0))
    pixels = _pixels(_save(tmp_path / "a.tif", image))
    assert pixels[0, 0].tolist() == [0, 255, 255]


def test_cmyk_jpeg_pure_cyan(tmp_path: Path) -> None:
    image = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    pixels = _pixels(_save(tmp_path / "a.jpg", image, quality=95))
    assert np.all(np.abs(pixels[4, 4] - np.array([0, 255, 255])) <= 8)


SIXTEEN_BIT = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
SIXTEEN_BIT_AS_8 = [0, 128, 255, 1]  # scaled by 255/65535, never saturated


def test_16_bit_png_keeps_levels(tmp_path: Path) -> None:
    image = Image.fromarray(SIXTEEN_BIT)
    path = _save(tmp_path / "a.png", image)
    assert Image.open(path).mode.startswith("I")
    pixels = _pixels(path)
    assert pixels[0, :, 0].tolist() == SIXTEEN_BIT_AS_8
    assert np.all(pixels == pixels[:, :, :1])  # grey


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_tiff_modes_keep_levels(tmp_path: Path, mode: str) -> None:
    byte_order = ">" if mode == "I;16B" else "<"
    image = Image.frombytes(mode, (4, 1), SIXTEEN_BIT.astype(f"{byte_order}u2").tobytes())
    path = _save(tmp_path / "a.tif", image)
    assert _pixels(path)[0, :, 0].tolist() == SIXTEEN_BIT_AS_8


def test_16_bit_png_transparency_key_becomes_white(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.fromarray(SIXTEEN_BIT), transparency=32768)
    assert _pixels(path)[0].tolist() == [[0] * 3, WHITE, [255] * 3, [1] * 3]


def test_mode_i_in_8_bit_range_is_kept(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I")
    assert _pixels(_save(tmp_path / "a.tif", image))[0, :, 0].tolist() == [0, 100, 255]


def test_mode_i_in_16_bit_range_is_scaled_as_16_bit(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32), "I")
    assert _pixels(_save(tmp_path / "a.tif", image))[0, :, 0].tolist() == [0, 128, 255]


def test_mode_i_beyond_16_bit_scales_by_peak_and_clips_negatives(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[-5, 400_000, 1_000_000]], dtype=np.int32), "I")
    assert _pixels(_save(tmp_path / "a.tif", image))[0, :, 0].tolist() == [0, 102, 255]


def test_mode_f_unit_range_is_scaled(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32), "F")
    assert _pixels(_save(tmp_path / "a.tif", image))[0, :, 0].tolist() == [0, 128, 255, 0]


def test_mode_f_in_8_bit_range_is_kept(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0.0, 100.0, 255.0]], dtype=np.float32), "F")
    assert _pixels(_save(tmp_path / "a.tif", image))[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize("name,mode", [("a.ppm", "RGB"), ("a.pgm", "L")])
def test_netpbm(tmp_path: Path, name: str, mode: str) -> None:
    image = Image.new(mode, (3, 2), (9, 8, 7) if mode == "RGB" else 9)
    pixels = _pixels(_save(tmp_path / name, image))
    assert pixels.shape == (2, 3, 3)
    assert pixels[1, 2].tolist() == ([9, 8, 7] if mode == "RGB" else [9, 9, 9])


def test_webp_lossless(tmp_path: Path) -> None:
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    image = Image.new("RGBA", (2, 1), (0, 255, 0, 255))
    image.putpixel((1, 0), (255, 0, 0, 0))
    assert _pixels(_save(tmp_path / "a.webp", image, lossless=True)).tolist() == [[[0, 255, 0], WHITE]]


def test_jpeg_rgb_approximately(tmp_path: Path) -> None:
    pixels = _pixels(_save(tmp_path / "a.jpg", Image.new("RGB", (16, 16), (200, 30, 60)), quality=95))
    assert np.all(np.abs(pixels - np.array([200, 30, 60])) <= 6)


def test_multi_frame_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    assert _pixels(path)[0, 0].tolist() == [255, 0, 0]


def test_multi_page_tiff_uses_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (4, 4), (0, 255, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    path = tmp_path / "a.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    pixels = _pixels(path)
    assert pixels.shape == (4, 4, 3)
    assert pixels[0, 0].tolist() == [0, 255, 0]


def test_load_rgb_returns_rgb_independent_of_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (3, 2), (1, 2, 3)))
    image = load_rgb(path)
    path.unlink()  # the returned image must not need the file any more
    assert image.mode == "RGB" and image.size == (3, 2)
    assert image.getpixel((2, 1)) == (1, 2, 3)


def test_accepts_str_file_object_and_bytes(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (3, 2), (1, 2, 3)))
    assert load_rgb(str(path)).size == (3, 2)
    with open(path, "rb") as handle:
        handle.read(5)  # decoding starts from the beginning wherever the stream stands
        assert load_rgb(handle).size == (3, 2)
        assert not handle.closed  # the caller's stream is left open
    assert load_rgb(path.read_bytes()).size == (3, 2)


# --- EXIF orientation --------------------------------------------------------------------------------

# How each EXIF orientation stores an upright picture (from the EXIF specification's row/column meaning,
# written with numpy so the test does not reuse Pillow's own mapping).
STORED = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_ends_upright(tmp_path: Path, orientation: int) -> None:
    upright = np.full((3, 5, 3), 128, dtype=np.uint8)
    upright[0, 0] = (255, 0, 0)  # one red corner pixel: top-left when upright
    upright[2, 4] = (0, 0, 255)  # and a blue one bottom-right, so mirror images differ too
    upright[0, 4] = (0, 255, 0)
    stored = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)), "RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / f"o{orientation}.png", stored, exif=exif)
    assert _pixels(path).tolist() == upright.tolist()


def test_exif_orientation_in_jpeg(tmp_path: Path) -> None:
    upright = np.zeros((16, 32, 3), dtype=np.uint8)
    upright[:8, :8] = (255, 0, 0)  # red block top-left
    stored = Image.fromarray(np.ascontiguousarray(STORED[6](upright)), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = _pixels(_save(tmp_path / "a.jpg", stored, exif=exif, quality=95))
    assert pixels.shape == (16, 32, 3)
    assert pixels[2, 2, 0] > 200 and pixels[13, 29, 0] < 50


# --- bad files ---------------------------------------------------------------------------------------


def _decode_error(path: Path | str) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path)
    error = caught.value
    assert str(error) == f"{error.path}: {error.reason}"
    assert str(path) in str(error)
    assert isinstance(error, DataError)
    return error


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert _decode_error(path).reason == "empty file (0 bytes)"


def test_missing_file(tmp_path: Path) -> None:
    assert _decode_error(tmp_path / "nope.jpg").reason == "file not found"


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    assert "directory" in _decode_error(tmp_path / "dir.png").reason


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    assert "not an image" in _decode_error(path).reason


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not the pixels you are looking for\n")
    assert "not an image" in _decode_error(path).reason


def test_truncated_png(tmp_path: Path) -> None:
    full = _save(tmp_path / "full.png", _noise(64, 64)).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    assert "truncated" in _decode_error(path).reason


def test_truncated_jpeg(tmp_path: Path) -> None:
    full = _save(tmp_path / "full.jpg", _noise(64, 64), quality=90).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: len(full) // 2])
    assert "truncated" in _decode_error(path).reason


def test_in_memory_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="^<bytes>: empty file"):
        load_rgb(b"")
    with pytest.raises(ImageDecodeError, match="^<stream>: not an image"):
        load_rgb(io.BytesIO(b"hello"))


def test_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(ImageDecodeError("a.png", "truncated file")))
    assert (error.path, error.reason, str(error)) == ("a.png", "truncated file", "a.png: truncated file")


# --- decompression bombs -----------------------------------------------------------------------------


def test_decompression_bomb_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(45_000, 45_000))
    assert path.stat().st_size < 100
    start = time.perf_counter()
    error = _decode_error(path)
    assert time.perf_counter() - start < 1.0
    assert error.reason == f"decompression bomb: {45_000 * 45_000} pixels > limit {DEFAULT_MAX_PIXELS}"


def test_bomb_just_over_max_pixels_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "claims.png"
    path.write_bytes(png_claiming_size(10_000, 10_000))  # 1e8 pixels, with no data behind them
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="decompression bomb: 100000000 pixels > limit 99999999"):
        load_rgb(path, max_pixels=10_000 * 10_000 - 1)
    assert time.perf_counter() - start < 1.0


def test_max_pixels_boundary(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (10, 10)))
    assert load_rgb(path, max_pixels=100).size == (10, 10)
    with pytest.raises(ImageDecodeError, match="decompression bomb: 100 pixels > limit 99"):
        load_rgb(path, max_pixels=99)


def test_pillow_warning_band_is_an_error_and_leaks_no_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shrink Pillow's limit so a tiny image sits in its warn-only band (between 1x and 2x).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _save(tmp_path / "a.png", Image.new("RGB", (40, 40)))  # 1600 pixels
    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        with pytest.raises(ImageDecodeError, match="decompression bomb: 1600 pixels > limit 1000") as caught:
            load_rgb(path, max_pixels=1000)
    assert isinstance(caught.value.__cause__, Image.DecompressionBombWarning)
    assert warnings.filters == filters_before


def test_max_pixels_above_pillow_limit_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = _save(tmp_path / "a.png", Image.new("RGB", (40, 40)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(path, max_pixels=5000).size == (40, 40)


def test_threads_leave_warning_filters_alone(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"{i}.png", Image.new("RGB", (8, 8), (i, 0, 0))) for i in range(64)]
    filters_before = list(warnings.filters)
    with ThreadPoolExecutor(max_workers=8) as pool:
        tensors = list(pool.map(decode_image, paths))
    assert [int(t[0, 0, 0]) for t in tensors] == list(range(64))
    assert warnings.filters == filters_before


# --- thin strips -------------------------------------------------------------------------------------


def _aspect_reason(width: int, height: int, ratio: float = MAX_ASPECT_RATIO) -> str:
    return (
        f"extreme aspect ratio {width} x {height} (longer side more than {ratio:g} times the shorter); "
        "not a photo: crop it or resize it"
    )


def test_thin_strip_is_refused_from_the_header_fast(tmp_path: Path) -> None:
    # 1 x 1,000,000 passes the pixel limit in a 2 KB file; resized to 32 px the old way it took 4 GB.
    path = _save(tmp_path / "strip.png", Image.new("L", (1, 1_000_000)))
    assert path.stat().st_size < 5_000
    start = time.perf_counter()
    error = _decode_error(path)
    assert time.perf_counter() - start < 1.0
    assert error.reason == _aspect_reason(1, 1_000_000)


def test_aspect_ratio_boundary(tmp_path: Path) -> None:
    assert MAX_ASPECT_RATIO == 50
    for width, height in ((1, 50), (50, 1), (20, 1000)):
        assert load_rgb(_save(tmp_path / "ok.png", Image.new("RGB", (width, height)))).size == (width, height)
    for width, height in ((1, 51), (51, 1)):
        path = _save(tmp_path / "thin.png", Image.new("RGB", (width, height)))
        assert _decode_error(path).reason == _aspect_reason(width, height)
    # Judged from the header alone: these files hold no pixel data at all.
    path = tmp_path / "claims.png"
    path.write_bytes(png_claiming_size(1_000, 60_000))
    assert _decode_error(path).reason == _aspect_reason(1_000, 60_000)
    path.write_bytes(png_claiming_size(1_000, 50_000))  # within the bound: fails later, for its missing data
    assert "aspect" not in _decode_error(path).reason


def test_max_aspect_ratio_keyword(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", Image.new("RGB", (10, 21)))
    assert decode_image(path, max_aspect_ratio=2.1).shape == (3, 21, 10)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, 8, max_aspect_ratio=2)
    assert caught.value.reason == _aspect_reason(10, 21, 2)
    strip = _save(tmp_path / "strip.png", Image.new("RGB", (1, 1_000)))
    assert load_rgb(strip, max_aspect_ratio=math.inf).size == (1, 1_000)
    for bad in (0.5, 0, -1, math.nan):
        with pytest.raises(ConfigError, match="max_aspect_ratio must be at least 1"):
            load_rgb(path, max_aspect_ratio=bad)


# --- resizing, extensions, read-only -----------------------------------------------------------------


def test_resize_to_square(tmp_path: Path) -> None:
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red, right half blue
    array[:, 20:] = (0, 0, 255)
    path = _save(tmp_path / "wide.png", Image.fromarray(array, "RGB"))
    assert decode_image(path).shape == (3, 20, 40)
    pixels = _pixels(path, 16)
    assert pixels.shape == (16, 16, 3)
    # 40x20 -> 32x16, center crop keeps columns 8..23: the red/blue edge stays in the middle.
    assert pixels[8, 0].tolist() == [255, 0, 0] and pixels[8, 15].tolist() == [0, 0, 255]
    tall = _save(tmp_path / "tall.png", Image.fromarray(array.transpose(1, 0, 2).copy(), "RGB"))
    assert decode_image(tall, 16).shape == (3, 16, 16)


def test_resize_and_crop_shapes() -> None:
    assert resize_and_crop(Image.new("RGB", (7, 300)), 32).size == (32, 32)
    assert resize_and_crop(Image.new("RGB", (3, 2)), 64).size == (64, 64)  # upscales small images
    same = Image.new("RGB", (5, 5), (1, 2, 3))
    assert np.array_equal(np.array(resize_and_crop(same, 5)), np.array(same))
    with pytest.raises(ConfigError):
        resize_and_crop(same, 0)


def _resize_whole_then_crop(image: Image.Image, size: int) -> Image.Image:
    """resize_and_crop as it was before issue #30: the whole image resized, then cropped (the reference)."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (
        (size, max(size, round(height * scale)))
        if width <= height
        else (max(size, round(width * scale)), size)
    )
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def test_resizing_only_the_crop_gives_the_pixels_of_resizing_the_whole_image() -> None:
    """Within 1 grey level, on few values: Pillow reads the box as float32, and Pillow 13 resizes a
    whole portrait of over 2:1 that shrinks vertical pass first (the 8-bit intermediate rounds the
    other way on about 1 value in 8 of those)."""
    rng = np.random.default_rng(30)
    shapes = [(1, 1), (1, 50), (50, 1), (7, 300), (300, 7), (300, 300), (299, 300), (2, 3)]
    shapes += [tuple(int(v) for v in rng.integers(1, 301, 2)) for _ in range(60)]
    shapes += [(side, side) for side in rng.integers(1, 301, 12).tolist()]
    worst, differing, total = 0, 0, 0
    for size in (8, 16, 32, 224):
        for width, height in shapes:
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
            new = np.asarray(resize_and_crop(image, size), dtype=int)
            old = np.asarray(_resize_whole_then_crop(image, size), dtype=int)
            assert new.shape == old.shape == (size, size, 3)
            difference = np.abs(new - old)
            worst = max(worst, int(difference.max()))
            differing, total = differing + int((difference > 0).sum()), total + difference.size
    assert worst <= 1
    assert differing / total < 0.01


RESIZE_COST = """
import io, json, resource, time
import numpy as np
from PIL import Image
from foveal.data.decode import decode_image, load_rgb, resize_and_crop

def status(field):  # bytes, from /proc (ru_maxrss would start at the peak of the parent that spawned us)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field + ":"))

def peak():  # this process's peak resident memory
    return status("VmHWM")

def measure(run):
    base, start, error = peak(), time.perf_counter(), None
    try:
        run()
    except MemoryError:
        error = "MemoryError"
    return {"growth": peak() - base, "seconds": time.perf_counter() - start, "error": error}

# Address space capped 1 GiB above what the imports took: a resize that needs gigabytes fails fast.
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + 2**30, resource.RLIM_INFINITY))
costs = {}
buffer = io.BytesIO()  # a grey ramp, 10,000 x 200 (50:1): the whole image at 224 px is 11,200 x 224
Image.fromarray(np.tile((np.arange(10_000) % 256).astype(np.uint8), (200, 1))).save(buffer, "PNG")
load_rgb(buffer.getvalue())  # the source pixels' own cost (8 MB as RGB) goes into the baseline
costs["wide 10000x200 png at 224"] = measure(lambda: decode_image(buffer.getvalue(), 224))
thin = Image.new("RGB", (1, 1_000_000))  # in memory: no header check; whole at 32 px: 32 x 32,000,000
costs["thin 1x1000000 image at 32"] = measure(lambda: resize_and_crop(thin, 32))
print(json.dumps(costs))
"""


@pytest.fixture(scope="module")
def resize_costs() -> dict:
    """Peak-memory growth and time of two resizes, measured in a fresh Python (peak RSS is per process)."""
    # A fixed mmap threshold: glibc then maps every large buffer afresh and unmaps it when freed, so
    # the peak follows the pixels alive at once rather than how the heap happened to be reused.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", RESIZE_COST], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status (Linux)")
@pytest.mark.parametrize(
    ("case", "size"), [("wide 10000x200 png at 224", 224), ("thin 1x1000000 image at 32", 32)]
)
def test_resizing_costs_what_the_output_costs(resize_costs: dict, case: str, size: int) -> None:
    """The old whole-image resize peaked 15 MB above the wide PNG's own pixels (a bound of 7.2 MB here),
    and ran out of its 1 GiB on the strip."""
    cost = resize_costs[case]
    assert cost["error"] is None, cost
    # A few output-sized buffers (RGBX, 4 bytes a pixel) and allocator slack; never the enlarged image.
    assert cost["growth"] < 4 * 2**20 + 16 * size * size * 4, cost
    assert cost["seconds"] < 0.5, cost


def test_is_image_file() -> None:
    assert is_image_file("a.JPG") and is_image_file(Path("b/c.TiFf")) and is_image_file("x.webp")
    assert not is_image_file("a.txt") and not is_image_file("jpg") and not is_image_file("a.jpg.bak")
    expected = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
    assert expected == IMAGE_EXTENSIONS


def test_files_are_not_modified(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    paths = [
        _save(tmp_path / "a.jpg", _noise(16, 8), exif=exif),
        _save(tmp_path / "a.png", Image.new("RGBA", (5, 3), (1, 2, 3, 0)), exif=exif),
        _save(tmp_path / "a.gif", _palette_image([[1, 2]]), transparency=1),
        _save(tmp_path / "a.tif", Image.fromarray(SIXTEEN_BIT)),
    ]
    before = {path: (_sha256(path), path.stat().st_mtime_ns) for path in paths}
    for path in paths:
        decode_image(path, 4)
        load_rgb(path)
    assert {path: (_sha256(path), path.stat().st_mtime_ns) for path in paths} == before


# --- fuzzing -----------------------------------------------------------------------------------------


def _valid_files() -> list[bytes]:
    files = []
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("BMP", {}), ("TIFF", {})):
        buffer = io.BytesIO()
        _noise(12, 10, seed=len(files)).save(buffer, fmt, **options)
        files.append(buffer.getvalue())
    return files


VALID_FILES = _valid_files()


@st.composite
def _mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_FILES)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt TIFF metadata
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), _mutated_files()))
def test_fuzz_only_image_decode_error_comes_out(data: bytes) -> None:
    try:
        # The cap keeps a mutated header from making a fuzz case decode a huge (if valid) image.
        image = load_rgb(io.BytesIO(data), max_pixels=1_000_000)
    except ImageDecodeError as error:
        assert error.reason
        return
    assert image.mode == "RGB" and image.width * image.height <= 1_000_000
