"""A model's resize (interpolation, crop_pct) reaches every decode: the resize itself against
torchvision's, a saved model's predictions from files, the decode cache, built-ins and the card."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import foveal
from foveal.data import cache, folders
from foveal.data.builtin import load_builtin
from foveal.data.files import decode_paths
from foveal.data.preprocess import Preprocessing
from foveal.data.resize import resize_and_crop
from foveal.errors import ConfigError
from foveal.models import build_model, model_config
from foveal.predictor.saved import ModelInfo, save_model

DEIT = {"interpolation": "bicubic", "crop_pct": 0.9}  # timm's DeiT eval transform
# Landscape, portrait, square, tiny (upscaled), odd sides, and 25:1 strips both ways.
SHAPES = [(64, 48), (48, 64), (40, 40), (3, 2), (9, 13), (61, 47), (500, 20), (20, 500), (427, 640)]


def _photo_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Smooth random colour fields with edges (a coarse grid of random colours, enlarged bicubic)."""
    coarse = rng.integers(0, 256, (max(1, height // 6) + 1, max(1, width // 6) + 1, 3), dtype=np.uint8)
    return Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)


def _torchvision(image: Image.Image, size: int, interpolation: str, crop_pct: float) -> Image.Image:
    """timm's eval transform (transforms_factory): Resize(floor(size / crop_pct)), then CenterCrop."""
    from torchvision.transforms import InterpolationMode, v2

    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[interpolation]
    resize = v2.Resize(math.floor(size / crop_pct), interpolation=mode, antialias=True)
    return v2.CenterCrop(size)(resize(image))


def _todays_resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """resize_and_crop as it was before interpolation and crop_pct (commit 1b95a98), verbatim."""
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = (
        (size, max(size, round(height * scale)))
        if width <= height
        else (max(size, round(width * scale)), size)
    )
    left = (new_width - size) // 2
    top = (new_height - size) // 2
    if (new_width, new_height) == image.size:
        return image.crop((left, top, left + size, top + size))
    sx, sy = width / new_width, height / new_height
    x0, x1, y0, y1 = left * sx, (left + size) * sx, top * sy, (top + size) * sy
    reach = max(sy, 1.0) + 1.0
    row0, row1 = max(0, math.floor(y0 - reach)), min(height, math.ceil(y1 + reach))
    band = image.resize((size, row1 - row0), Image.Resampling.BILINEAR, box=(x0, row0, x1, row1))
    return band.resize((size, size), Image.Resampling.BILINEAR, box=(0, y0 - row0, size, y1 - row0))


@pytest.mark.parametrize(
    ("interpolation", "crop_pct"), [("bicubic", 0.9), ("bicubic", 0.875), ("bicubic", 1.0), ("bilinear", 0.9)]
)
def test_a_public_checkpoints_resize_is_torchvisions(interpolation: str, crop_pct: float) -> None:
    """The pixels of timm's Resize + CenterCrop, to within Pillow's rounding: resizing only the crop's
    box, in two passes, rounds the 8-bit intermediate on its own. Measured here (Pillow 13.0,
    torchvision 0.29, 1,377,216 values per case): on photo-like images 99.9996% to 100% of the values
    within 1 grey level and all within 2; on white noise, the worst case for that rounding, 99.999%
    within 1 and 99.9991% to 100% within 2, the rest (a dozen values, up to 11 off) on the 20 x 500
    strip, whose whole Pillow resizes vertical pass first, where bicubic's overshoot clips differently."""
    rng = np.random.default_rng(32)
    for content in ("photo", "noise"):
        within_1 = within_2 = total = 0
        for size in (16, 24, 224):
            for width, height in SHAPES:
                if content == "photo":
                    image = _photo_like(width, height, rng)
                else:
                    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
                ours = resize_and_crop(image, size, interpolation=interpolation, crop_pct=crop_pct)
                theirs = _torchvision(image, size, interpolation, crop_pct)
                assert ours.size == theirs.size == (size, size)
                difference = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int))
                within_1 += int((difference <= 1).sum())
                within_2 += int((difference <= 2).sum())
                total += difference.size
        if content == "photo":
            assert within_1 / total > 0.99999 and within_2 == total, within_1 / total
        else:
            assert within_2 / total > 0.9999, within_2 / total


def test_the_default_resize_is_todays_to_the_bit() -> None:
    """bilinear and crop_pct 1 keep the pixels every Foveal model so far was trained and read with."""
    rng = np.random.default_rng(1)
    shapes = [*SHAPES, (1, 1), (1, 50), (7, 300), (299, 300)]
    shapes += [tuple(int(v) for v in rng.integers(1, 300, 2)) for _ in range(40)]
    for size in (8, 16, 224):
        for width, height in shapes:
            if max(width, height) > 50 * min(width, height):
                continue
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
            today = np.asarray(_todays_resize_and_crop(image, size))
            assert np.array_equal(np.asarray(resize_and_crop(image, size)), today), (width, height, size)
            explicit = resize_and_crop(image, size, interpolation="bilinear", crop_pct=1.0)
            assert np.array_equal(np.asarray(explicit), today)


def test_interpolation_and_crop_pct_change_the_pixels_and_are_checked() -> None:
    image = _photo_like(61, 47, np.random.default_rng(2))
    plain = np.asarray(resize_and_crop(image, 24), dtype=int)
    assert (
        np.abs(np.asarray(resize_and_crop(image, 24, interpolation="bicubic"), dtype=int) - plain).max() > 2
    )
    assert np.abs(np.asarray(resize_and_crop(image, 24, crop_pct=0.9), dtype=int) - plain).max() > 2
    with pytest.raises(ConfigError, match="interpolation"):
        resize_and_crop(image, 24, interpolation="nearest")  # type: ignore[arg-type]
    for crop_pct in (0.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="crop_pct"):
            resize_and_crop(image, 24, crop_pct=crop_pct)


def _image_files(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        _photo_like(40 + 7 * index, 30 + 5 * index, rng).save(path)
        paths.append(path)
    return paths


def test_a_saved_models_resize_is_how_it_reads_files(tmp_path: Path) -> None:
    """A model saved with DeiT's resize predicts from a file what it predicts from the tensor its
    preprocessing decodes, and not what it would from the default (bilinear, whole side) decode."""
    torch.manual_seed(0)
    config = model_config("foveal-nano", num_classes=3, img_size=16, embed_dim=32, tokenizer_channels=8)
    preprocessing = Preprocessing(16, (0.45, 0.5, 0.55), (0.2, 0.25, 0.3), **DEIT)
    path = save_model(
        tmp_path / "m.safetensors", build_model(config), ModelInfo(config, ["a", "b", "c"], preprocessing)
    )
    classifier = foveal.load(path, device="cpu")
    assert (classifier.preprocessing.interpolation, classifier.preprocessing.crop_pct) == ("bicubic", 0.9)
    files = _image_files(tmp_path / "images")
    decoded = torch.stack([preprocessing.decode(f) for f in files])
    from_files = classifier.logits([str(f) for f in files])
    torch.testing.assert_close(from_files, classifier.logits(decoded), rtol=0, atol=0)
    batch, good, failed = decode_paths(files, classifier.preprocessing)  # predict, explain, bench
    assert torch.equal(batch, decoded) and good == files and not failed
    default = torch.stack([Preprocessing(16).decode(f) for f in files])
    assert not torch.equal(default, decoded)
    assert not torch.allclose(classifier.logits(default), from_files)


def test_the_server_decodes_an_upload_with_the_models_resize(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from foveal.serving.upload import decode_upload

    data = _image_files(tmp_path)[0].read_bytes()
    preprocessing = Preprocessing(16, **DEIT)
    uploaded = asyncio.run(decode_upload(data, preprocessing, 10_000))
    assert torch.equal(uploaded, preprocessing.decode(data))
    assert not torch.equal(uploaded, Preprocessing(16).decode(data))


def test_a_folder_decoded_bilinear_is_never_read_back_for_a_bicubic_model(
    tmp_path: Path, foveal_home: Path
) -> None:
    paths = [str(p) for p in _image_files(tmp_path / "images")]
    labels = [0, 1, 0]
    key = cache.cache_key(paths, labels, 16, 10_000)
    assert cache.cache_key(paths, labels, 16, 10_000, interpolation="bilinear", crop_pct=1.0) == key
    assert cache.cache_key(paths, labels, 16, 10_000, interpolation="bicubic") != key
    assert cache.cache_key(paths, labels, 16, 10_000, crop_pct=0.9) != key
    bilinear = folders.decode_files(paths, labels, ["a", "b"], 16, workers=1)
    bicubic = folders.decode_files(paths, labels, ["a", "b"], 16, workers=1, **DEIT)
    expected = torch.stack([Preprocessing(16, **DEIT).decode(p) for p in paths])
    assert torch.equal(bicubic.images, expected) and not torch.equal(bicubic.images, bilinear.images)
    assert len(list((foveal_home / "decoded").glob("*.safetensors"))) == 2  # one entry each


def test_a_built_in_set_is_resized_as_the_model_says() -> None:
    """Its images go through the files' own resize_and_crop; the default keeps the built-ins' resize."""
    pytest.importorskip("sklearn")
    native, _ = load_builtin("digits", 8)  # (N, 3, 8, 8) as scikit-learn has them
    default, _ = load_builtin("digits", 16)
    deit, _ = load_builtin("digits", 16, **DEIT)
    assert deit.images.shape == default.images.shape == (len(native), 3, 16, 16)
    assert torch.equal(deit.labels, native.labels) and not torch.equal(deit.images, default.images)
    for index in (0, len(native) - 1):
        image = Image.fromarray(native.images[index].permute(1, 2, 0).numpy())
        expected = np.asarray(resize_and_crop(image, 16, **DEIT))
        assert np.array_equal(deit.images[index].permute(1, 2, 0).numpy(), expected)


def test_the_card_says_the_crop() -> None:
    from foveal.exporting.card import body
    from foveal.exporting.facts import RunFacts

    config = model_config("foveal-nano", num_classes=2, img_size=224)
    card = body("m", ModelInfo(config, ["a", "b"], Preprocessing(224, **DEIT)), RunFacts())
    assert "shorter side to\n248 px (bicubic, antialiased)" in card
    assert "crop_pct 0.9: 248 = floor(224 / 0.9)" in card
    plain = body("m", ModelInfo(config, ["a", "b"], Preprocessing(224)), RunFacts())
    assert "224 px (bilinear, antialiased), center-crop to 224 x 224," in plain and "crop_pct" not in plain
