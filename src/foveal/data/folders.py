"""Class-folder data sets: root/<class>/<image>. Files are only ever read, never changed."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from foveal.data.decode import ImageDecodeError, decode_image, is_image_file
from foveal.data.imageset import ImageSet
from foveal.errors import DataError


def find_classes(root: Path) -> list[str]:
    """Sorted names of the class folders in `root`; raises DataError for a missing, empty or
    one-class root, or a class folder without images."""
    if not root.exists():
        raise DataError(
            f"data folder {root} does not exist; expected a folder of class folders "
            "(root/<class>/<image>) or a built-in name such as 'digits'."
        )
    if not root.is_dir():
        raise DataError(f"{root} is a file; expected a folder of class folders (root/<class>/<image>).")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root} has no class folders; expected root/<class>/<image> with one folder per class."
        )
    if len(classes) < 2:
        raise DataError(
            f"{root} has one class folder ({classes[0]!r}); a classifier needs at least 2 classes."
        )
    return classes


def list_images(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """Image paths (sorted, recursive within each class folder) and their class indices."""
    paths, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(str(p) for p in (root / name).rglob("*") if p.is_file() and is_image_file(p))
        if not found:
            raise DataError(
                f"class folder {root / name} has no images (expected .jpg, .png, ...); "
                "add images or remove the folder."
            )
        paths += found
        labels += [index] * len(found)
    return paths, labels


def decode_files(
    paths: list[str], labels: list[int], classes: list[str], img_size: int, workers: int | None = None
) -> ImageSet:
    """Decode `paths` to an in-memory ImageSet of img_size x img_size images.

    Files that cannot be decoded are reported in `skipped` with the reason and left out;
    Pillow releases the GIL while decoding, so threads use every core.
    """
    workers = workers or os.cpu_count() or 1

    def decode(path: str) -> torch.Tensor | ImageDecodeError:
        try:
            return decode_image(path, img_size)
        except ImageDecodeError as error:
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(decode, paths, chunksize=64))
    good = [i for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
    skipped = [(paths[i], r.reason) for i, r in enumerate(results) if isinstance(r, ImageDecodeError)]
    if not good:
        raise DataError(
            f"none of the {len(paths)} images could be decoded (first: {skipped[0][0]}: {skipped[0][1]})."
        )
    images = torch.stack([results[i] for i in good]) if good else torch.empty(0, 3, img_size, img_size)
    return ImageSet(
        images=images,
        labels=torch.tensor([labels[i] for i in good], dtype=torch.int64),
        classes=classes,
        paths=[paths[i] for i in good],
        skipped=skipped,
    )
