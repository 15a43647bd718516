"""Built-in data sets: `digits` (ships inside scikit-learn, works offline) and `cifar10` (downloaded
once by torchvision into the cache folder; an existing copy there is read without a network)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from foveal.data.imageset import ImageSet
from foveal.data.mapped import check_fits_in_memory
from foveal.data.resize import Interpolation, resize_and_crop
from foveal.data.split import stratified_split
from foveal.errors import DataError

# Native side in pixels: the default input size for each built-in set.
NATIVE_SIZE = {"digits": 8, "cifar10": 32}
# Images of each, training and held-out: a built-in set is held in memory, checked to fit before it loads.
IMAGES = {"digits": 1_797, "cifar10": 60_000}
# Horizontal flips change a digit's identity (a mirrored 2 is no 2); photos survive them.
FLIP_SAFE = {"digits": False, "cifar10": True}
Resizer = Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, 3, s, s) -> uint8 (N, 3, S, S)


def cache_dir() -> Path:
    """Where Foveal keeps downloads and caches: $FOVEAL_HOME, else ~/.cache/foveal."""
    return Path(os.environ.get("FOVEAL_HOME", Path.home() / ".cache" / "foveal"))


def load_builtin(
    name: str, img_size: int, *, interpolation: Interpolation = "bilinear", crop_pct: float = 1.0
) -> tuple[ImageSet, ImageSet]:
    """(train, held-out test) of built-in set `name` at img_size x img_size, resized with
    `interpolation` and center-cropped to `crop_pct` of the resized side (see `resize_and_crop`).
    Refused (DataError) when they would not fit in memory at `img_size`."""
    check_fits_in_memory(IMAGES[name], img_size, mappable=False)
    loaders: dict[str, Callable[[Resizer], tuple[ImageSet, ImageSet]]] = {
        "digits": _digits,
        "cifar10": _cifar10,
    }
    return loaders[name](partial(_resize, size=img_size, interpolation=interpolation, crop_pct=crop_pct))


def _resize(
    images: torch.Tensor, *, size: int, interpolation: Interpolation, crop_pct: float
) -> torch.Tensor:
    """uint8 (N, 3, s, s) -> uint8 (N, 3, size, size).

    Bilinear over the whole image (antialiased when shrinking) is how Foveal's own models met the
    built-ins, so it stays; any other resize is a public checkpoint's, done as for its image files.
    """
    if (interpolation, crop_pct) != ("bilinear", 1.0):
        return _resize_as_files(images, size, interpolation, crop_pct)
    if images.shape[-1] == size:
        return images
    resized = F.interpolate(
        images.float(),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=size < images.shape[-1],
    )
    return resized.round().clamp(0, 255).to(torch.uint8)


def _resize_as_files(
    images: torch.Tensor, size: int, interpolation: Interpolation, crop_pct: float
) -> torch.Tensor:
    """uint8 (N, 3, s, s) -> uint8 (N, 3, size, size), image by image through `resize_and_crop`."""
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for index, pixels in enumerate(images.permute(0, 2, 3, 1).numpy()):  # (s, s, 3) each
        image = resize_and_crop(Image.fromarray(pixels), size, interpolation=interpolation, crop_pct=crop_pct)
        out[index] = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # (size, size, 3) -> (3, ...)
    return out


def _digits(resize: Resizer) -> tuple[ImageSet, ImageSet]:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 1,797 8x8 images with 17 grey levels (0..16)
    grey = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))  # (N, 8, 8)
    images = resize(grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous())
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    classes = [str(c) for c in bunch.target_names]
    # A fixed 20% held out per class; keys make the split independent of the training seed.
    keys = [f"digits/{i}" for i in range(len(labels))]
    train, test = stratified_split(keys, labels.tolist(), 0.2, class_names=classes)
    full = ImageSet(images, labels, classes)
    return full.subset(torch.tensor(train)), full.subset(torch.tensor(test))


def _cifar10(resize: Resizer) -> tuple[ImageSet, ImageSet]:
    from torchvision.datasets import CIFAR10

    root = cache_dir() / "datasets"
    sets = []
    for train in (True, False):
        try:
            data = CIFAR10(root=str(root), train=train, download=True)
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"could not download CIFAR-10 into {root} ({error}). Without a network, put "
                "the extracted 'cifar-10-batches-py' folder there, or pass a folder of class "
                "folders instead."
            ) from None
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        sets.append(
            ImageSet(resize(images), torch.tensor(data.targets, dtype=torch.int64), list(data.classes))
        )
    return sets[0], sets[1]
