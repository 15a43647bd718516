"""Tiny synthetic image folders for tests, made in a temp dir."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Three visually separable classes: a bright square in a different place per class, plus noise.
CLASSES = ("circle", "square", "triangle")


def make_image(label: int, rng: np.random.Generator, size: int = 20) -> Image.Image:
    pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    third = size // 3
    pixels[:, label * third : (label + 1) * third, label] = 230  # a class-coloured stripe
    return Image.fromarray(pixels)


def make_class_folder(root: Path, per_class: int = 12, size: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(label, rng, size).save(root / name / f"{i:03d}.png")
    return root


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny 1-bit PNG whose IHDR claims width x height (with a valid CRC); a few dozen bytes."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width and height as big-endian uint32.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC over type + 13 data bytes
    return bytes(data)


def tiny_run(
    folder: Path, model: str, *, per_class: int, epochs: int = 1, **options: object
) -> tuple[Path, Path]:
    """(run folder, data folder): `model` trained for `epochs` at 16 px, batch 8, on a synthetic class
    folder of `per_class` images a class made in `folder` (folder/shapes, runs in folder/runs);
    `options` are further training options (e.g. tta_flip=True)."""
    import foveal  # here, so that building images does not import torch

    data = make_class_folder(folder / "shapes", per_class=per_class)
    result = foveal.train(
        data=str(data), model=model, epochs=epochs, batch_size=8, img_size=16, out=str(folder / "runs"),
        report=False, quiet=True, **options,
    )  # fmt: skip
    return result.run_dir, data


def with_threshold(model: Path, out: Path, threshold: float) -> Path:
    """A copy of saved `model` (a run folder or .safetensors) at `out` whose open-set threshold is
    `threshold` (foveal/predictor/rejection.py): to make a test's images fall on a chosen side of it."""
    from foveal.predictor.saved import load_model, resolve_model_path, save_model

    loaded, info = load_model(resolve_model_path(model))
    info.extra["rejection"] = {**info.extra["rejection"], "threshold": threshold}
    return save_model(out, loaded, info)
