"""Image files and tensors given for prediction: found in folders, decoded, or checked."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from foveal.data.decode import ImageDecodeError, is_image_file
from foveal.data.preprocess import Preprocessing
from foveal.errors import DataError, FovealError


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise DataError(f"folder {path} has no image files (.jpg, .png, ...).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path} does not exist; expected image files or folders of images.")
    return files


def decode_paths(
    files: list[Path], preprocessing: Preprocessing
) -> tuple[torch.Tensor, list[Path], list[tuple[str, str]]]:
    """Decode every file it can as `preprocessing` says: uint8 images (N, 3, S, S), their paths, and
    (path, reason) of the files skipped. Raises FovealError when none decodes."""
    good, images, failed = [], [], []
    for path in files:
        try:
            images.append(preprocessing.decode(path))
            good.append(path)
        except ImageDecodeError as error:
            failed.append((str(path), error.reason))
    if not good:
        raise FovealError(
            f"none of the {len(files)} files could be decoded (first: {failed[0][0]}: {failed[0][1]})."
        )
    return torch.stack(images), good, failed


def check_image_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    """`images` as uint8 (N, 3, size, size) (a single (3, size, size) image gets a batch axis), or a
    DataError saying what was expected."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise DataError(
            f"expected a uint8 tensor of shape (N, 3, {size}, {size}), got {images.dtype} "
            f"{tuple(images.shape)}; pass file paths to have Foveal resize them."
        )
    return images
