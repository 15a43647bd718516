"""Shared fixtures: tiny synthetic image folders made in a temp dir, tiny training settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Three visually separable classes: a bright square in a different place per class, plus noise.
CLASSES = ("circle", "square", "triangle")


def make_image(label: int, rng: np.random.Generator, size: int = 20) -> Image.Image:
    pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    third = size // 3
    pixels[:, label * third:(label + 1) * third, label] = 230  # a class-coloured stripe
    return Image.fromarray(pixels)


def make_class_folder(root: Path, per_class: int = 12, size: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(label, rng, size).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/<class>/<image>.png: 3 classes x 12 images of 20x20 px."""
    return make_class_folder(tmp_path / "shapes")


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """root/train/<class>/ and root/val/<class>/."""
    root = tmp_path / "shapes_split"
    make_class_folder(root / "train", per_class=10, seed=1)
    make_class_folder(root / "val", per_class=4, seed=2)
    return root


@pytest.fixture
def tiny_train_options(tmp_path: Path) -> dict:
    """Settings for a run that takes a second or two on a CPU."""
    return {"model": "foveal-tiny", "epochs": 2, "batch_size": 8, "img_size": 16, "out": str(tmp_path / "runs"),
            "threads": 2}
