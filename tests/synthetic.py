"""Tiny synthetic image folders for tests, made in a temp dir."""

from __future__ import annotations

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
