"""Turn what the user names (a built-in name, a data set root, a class folder) into ImageSets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median

from foveal.data.builtin import FLIP_SAFE, NATIVE_SIZE, load_builtin
from foveal.data.decode import DEFAULT_MAX_PIXELS
from foveal.data.folders import decode_files, find_classes, list_images
from foveal.data.imageset import ImageSet
from foveal.data.mapped import DataStorage
from foveal.data.preprocess import Preprocessing
from foveal.data.resize import Interpolation
from foveal.data.split import read_manifest, stratified_split
from foveal.errors import DataError
from foveal.messages import counted

BUILTINS = tuple(NATIVE_SIZE)
HELD_OUT_NAMES = ("val", "test")  # root/train beside root/val (or root/test) is a pre-split data set
FolderDecoder = Callable[[list[str], list[int], list[str]], ImageSet]  # decode_files(paths, labels, classes)


@dataclass
class DataSplits:
    """Training and validation images plus where they came from."""

    train: ImageSet
    val: ImageSet
    description: str  # one line for logs, e.g. "digits (built-in): 1437 train / 360 held-out"
    flip_safe: bool = True  # whether horizontal flips keep labels (False for digits)
    split: dict[str, list[str]] = field(default_factory=dict)  # train/val relative paths of an auto-split

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def default_img_size(source: str) -> int:
    """The input size to use when the user gives none: native for built-ins, else the median
    shorter side of a sample of the images, clamped to 16..224 and rounded to a multiple of 8."""
    if source in NATIVE_SIZE:
        return max(NATIVE_SIZE[source], 16)  # the 8-px digits gain tokens from a 2x upsample
    from PIL import Image

    root = Path(source)
    root = root / "train" if (root / "train").is_dir() else root
    paths = [p for p in root.rglob("*") if p.is_file()][:64]
    sides = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are reported by the decoder later; skip them here
            continue
    side = median(sides) if sides else 32
    return int(min(224, max(16, round(side / 8) * 8)))


def count_folder_images(source: str, val_fraction: float = 0.1) -> tuple[int, int]:
    """(training images, classes) of a folder `source`, counted from its file names without decoding
    anything: for planning before the images are decoded. About right: files that turn out not to
    decode are counted, and an auto-split is taken to hold out `val_fraction` of them."""
    root = Path(source)
    held_out = _held_out_folder(root)
    folder = root / "train" if held_out is not None else root
    classes = find_classes(folder)
    images = len(list_images(folder, classes)[0])
    return (images if held_out is not None else round(images * (1 - val_fraction))), len(classes)


def _held_out_folder(root: Path) -> Path | None:
    if not (root / "train").is_dir():
        return None
    return next((root / n for n in HELD_OUT_NAMES if (root / n).is_dir()), None)


def load_training_data(
    source: str,
    img_size: int,
    *,
    interpolation: Interpolation = "bilinear",
    crop_pct: float = 1.0,
    val_fraction: float = 0.1,
    split_manifest: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage: DataStorage = "auto",
) -> DataSplits:
    """Images for training and validation from `source`.

    Args:
        source: a built-in name, a root with train/ and val/ (or test/), or a folder of class folders
            (split stratified into train/val by `val_fraction`, or as `split_manifest` says).
        img_size: side the images are resized and center-cropped to.
        interpolation: the resize's filter (a model's `Preprocessing.interpolation`).
        crop_pct: share of the resized shorter side the center crop keeps (`Preprocessing.crop_pct`).
        max_pixels: larger images are refused as decompression bombs.
        storage: decoded images in "memory", memory-mapped from "disk", or "auto" (see `decode_files`).
    """
    if source in BUILTINS:
        train, test = load_builtin(source, img_size, interpolation=interpolation, crop_pct=crop_pct)
        return DataSplits(
            train,
            test,
            f"{source} (built-in): {len(train)} train / {len(test)} held-out",
            flip_safe=FLIP_SAFE[source],
        )
    decode = partial(
        decode_files,
        img_size=img_size,
        interpolation=interpolation,
        crop_pct=crop_pct,
        max_pixels=max_pixels,
        storage=storage,
    )
    root = Path(source)
    held_out = _held_out_folder(root)
    if held_out is not None:
        classes = find_classes(root / "train")
        train = decode(*list_images(root / "train", classes), classes)
        val = decode(*labelled_images(held_out, classes), classes)
        return DataSplits(train, val, f"{root}: {len(train)} train / {len(val)} from {held_out.name}/")
    return _auto_split(root, val_fraction, split_manifest, decode)


def _auto_split(
    root: Path, val_fraction: float, split_manifest: str | Path | None, decode_folder: FolderDecoder
) -> DataSplits:
    classes = find_classes(root)
    if split_manifest is not None:
        manifest = read_manifest(Path(split_manifest))
        if manifest["classes"] != classes:
            raise DataError(
                f"split manifest {split_manifest} lists classes {manifest['classes']}, but "
                f"{root} has {classes}; use the manifest of a run on this folder."
            )
        train_paths = [str(root / p) for p in manifest["train"]]
        val_paths = [str(root / p) for p in manifest["val"]]
        label_of = {p: classes.index(Path(p).relative_to(root).parts[0]) for p in train_paths + val_paths}
    else:
        paths, labels = list_images(root, classes)
        keys = [str(Path(p).relative_to(root)) for p in paths]
        train_idx, val_idx = stratified_split(keys, labels, val_fraction, class_names=classes)
        train_paths, val_paths = [paths[i] for i in train_idx], [paths[i] for i in val_idx]
        label_of = dict(zip(paths, labels))

    def decode(files: list[str]) -> ImageSet:
        return decode_folder(files, [label_of[p] for p in files], classes)

    train, val = decode(train_paths), decode(val_paths)
    split = {
        "train": [str(Path(p).relative_to(root)) for p in train.paths],
        "val": [str(Path(p).relative_to(root)) for p in val.paths],
    }
    return DataSplits(
        train, val, f"{root}: {len(train)} train / {len(val)} val (stratified auto-split)", split=split
    )


def labelled_images(folder: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """The image paths of a class-folder `folder` and their labels, indices into the model's `classes`
    (the folder may hold a subset of them)."""
    found = find_classes(folder)
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise DataError(
            f"{folder} has class folders {unknown} that the model does not know; expected "
            f"folders named from {classes}."
        )
    paths, local = list_images(folder, found)
    return paths, [classes.index(found[i]) for i in local]


def load_evaluation_data(
    source: str, classes: list[str], preprocessing: Preprocessing
) -> tuple[ImageSet, str]:
    """Images to evaluate a model on, decoded as its `preprocessing` says, and a description: a
    built-in's held-out split, a data set root's val/ (or test/) folder, or every image of a folder of
    class folders."""
    size, interpolation, crop_pct = (
        preprocessing.img_size,
        preprocessing.interpolation,
        preprocessing.crop_pct,
    )
    if source in BUILTINS:
        _, test = load_builtin(source, size, interpolation=interpolation, crop_pct=crop_pct)
        if test.classes != classes:
            raise DataError(
                f"the model's classes {classes} are not those of built-in {source!r} "
                f"({test.classes}); evaluate it on data with its own classes."
            )
        return test, f"{source} (built-in), held-out split: {counted(len(test), 'image')}"
    root = Path(source)
    held_out = _held_out_folder(root)
    folder = held_out if held_out is not None else root
    paths, labels = labelled_images(folder, classes)
    images = decode_files(paths, labels, classes, size, interpolation=interpolation, crop_pct=crop_pct)
    return images, f"{folder}: {counted(len(images), 'image')}"
