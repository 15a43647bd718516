"""Turn what the user names (a built-in name, a data set root, a class folder, a table of labels)
into ImageSets."""

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
from foveal.data.table import LabelTable, find_table, read_table
from foveal.errors import DataError
from foveal.messages import counted, say

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
    skipped_rows: list[tuple[str, str]] = field(default_factory=list)  # (table:line, reason) of a table

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def default_img_size(source: str) -> int:
    """The input size to use when the user gives none: native for built-ins, else the median
    shorter side of a sample of the images, clamped to 16..224 and rounded to a multiple of 8."""
    if source in NATIVE_SIZE:
        return max(NATIVE_SIZE[source], 16)  # the 8-px digits gain tokens from a 2x upsample
    from PIL import Image

    table = find_table(source)
    if table is not None:
        labelled = read_table(table)
        paths = [Path(labelled.file(key)) for key in labelled.keys[:64]]
    else:
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
    """(training images, classes) of a folder or table `source`, counted from its file names without
    decoding anything: for planning before the images are decoded. About right: files that turn out
    not to decode are counted, and an auto-split is taken to hold out `val_fraction` of them."""
    table = find_table(source)
    if table is not None:
        labelled = read_table(table)
        train_keys, held_out = _given_split(labelled)
        images = len(train_keys) if held_out else round(len(train_keys) * (1 - val_fraction))
        return images, len(labelled.classes)
    root = Path(source)
    held_out = _held_out_folder(root)
    folder = root / "train" if held_out is not None else root
    if held_out is not None and (table := find_table(folder)) is not None:
        labelled = read_table(table)  # Hugging Face's layout: train/metadata.csv beside val/ or test/
        return len(labelled.keys), len(labelled.classes)
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
        source: a built-in name, a root with train/ and val/ (or test/), a folder of class folders
            (split stratified into train/val by `val_fraction`, or as `split_manifest` says), or a
            table of labels (`foveal.data.table`: split by its split column, else as a folder).
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
    table = find_table(source)
    if table is not None:
        return _table_split(read_table(table), val_fraction, split_manifest, decode)
    root = Path(source)
    held_out = _held_out_folder(root)
    if held_out is not None and (table := find_table(root / "train")) is not None:
        return _split_tables(read_table(table), held_out, decode)
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
        train_keys, val_keys = _manifest_keys(split_manifest, classes, root)
        label_of = {key: classes.index(Path(key).parts[0]) for key in train_keys + val_keys}
    else:
        paths, labels = list_images(root, classes)
        label_of = {str(Path(p).relative_to(root)): label for p, label in zip(paths, labels)}
        train_keys, val_keys = _stratified(list(label_of), label_of, val_fraction, classes)
    return _decode_split(
        root, train_keys, val_keys, label_of, classes, decode_folder, f"{root}", "stratified auto-split"
    )


def _table_split(
    table: LabelTable, val_fraction: float, split_manifest: str | Path | None, decode_folder: FolderDecoder
) -> DataSplits:
    """A table's rows split by `split_manifest`, else by its split column, else stratified like a
    folder's files; its bad rows are said and kept for the run's skipped.txt."""
    _check_two_classes(table)
    label_of = dict(zip(table.keys, table.labels))
    train_keys, held_out = _given_split(table)
    if split_manifest is not None:
        train_keys, held_out = _manifest_keys(split_manifest, table.classes, table.path)
        unknown = [key for key in train_keys + held_out if key not in label_of]
        if unknown:
            raise DataError(
                f"split manifest {split_manifest} names {counted(len(unknown), 'file')} that "
                f"{table.path} has no usable row for (first: {unknown[0]}); use the manifest of a run "
                "on this table."
            )
        how = "split as the manifest says"
    elif not train_keys:
        raise DataError(
            f"{table.path} has no rows whose split is train; expected train rows beside val or test."
        )
    elif held_out:
        how = "its split column"
    else:
        train_keys, held_out = _stratified(train_keys, label_of, val_fraction, table.classes)
        how = "stratified auto-split"
    _say_bad_rows(table)
    data = _decode_split(
        table.root, train_keys, held_out, label_of, table.classes, decode_folder, str(table.path), how
    )
    data.skipped_rows = table.skipped_rows
    return data


def _split_tables(train: LabelTable, held_out: Path, decode_folder: FolderDecoder) -> DataSplits:
    """Hugging Face's imagefolder with splits: root/train/metadata.csv for training beside
    root/val/ (or test/) with a table of its own, whose labels must be among train's."""
    found = find_table(held_out)
    if found is None:
        raise DataError(
            f"{train.path} labels the training images, but {held_out} has no metadata.csv or "
            "metadata.jsonl; expected one there labelling its images (file_name,label)."
        )
    val = read_table(found)
    _check_two_classes(train)
    files, labels = _table_rows(val, val.keys, train.classes)
    for table in (train, val):
        _say_bad_rows(table)
    train_set = decode_folder([train.file(key) for key in train.keys], train.labels, train.classes)
    val_set = decode_folder(files, labels, train.classes)
    return DataSplits(
        train_set,
        val_set,
        f"{held_out.parent}: {len(train_set)} train / {len(val_set)} from {held_out.name}/",
        skipped_rows=train.skipped_rows + val.skipped_rows,
    )


def _say_bad_rows(table: LabelTable) -> None:
    """One line on the rows of `table` skipped, if any (they also go to the run's skipped.txt)."""
    if table.bad_rows:
        say(f"data: {table.bad_rows_message()}")


def _check_two_classes(table: LabelTable) -> None:
    if len(table.classes) < 2:
        raise DataError(
            f"{table.path} has one label ({table.classes[0]!r}) in its usable rows; a classifier needs "
            "at least 2 classes."
        )


def _table_rows(table: LabelTable, keys: list[str], classes: list[str]) -> tuple[list[str], list[int]]:
    """The files of a table's rows `keys` and their labels as indices into a model's `classes`; a
    DataError for a label the model does not know."""
    wanted = set(keys)
    names = [table.classes[label] for key, label in zip(table.keys, table.labels) if key in wanted]
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(
            f"{table.path} has labels {unknown} that the model does not know; expected labels from {classes}."
        )
    return [table.file(key) for key in keys], [index[name] for name in names]


def _given_split(table: LabelTable) -> tuple[list[str], list[str]]:
    """The keys of a table's training rows and of the rows its split column holds out: the val rows,
    else the test rows (as root/test serves when there is no root/val). Without a split column, or
    with train rows alone, every row is a training row and none is held out (an auto-split's job)."""
    if table.splits is None:
        return list(table.keys), []
    return table.keys_in("train"), table.keys_in("val") or table.keys_in("test")


def _stratified(
    keys: list[str], label_of: dict[str, int], val_fraction: float, classes: list[str]
) -> tuple[list[str], list[str]]:
    """`keys` split into (train, val) by `stratified_split`, a pure function of the keys."""
    train_idx, val_idx = stratified_split(
        keys, [label_of[key] for key in keys], val_fraction, class_names=classes
    )
    return [keys[i] for i in train_idx], [keys[i] for i in val_idx]


def _manifest_keys(split_manifest: str | Path, classes: list[str], data: Path) -> tuple[list[str], list[str]]:
    """The (train, val) keys of a split manifest, which must be of `data`'s `classes`."""
    manifest = read_manifest(Path(split_manifest))
    if manifest["classes"] != classes:
        raise DataError(
            f"split manifest {split_manifest} lists classes {manifest['classes']}, but "
            f"{data} has {classes}; use the manifest of a run on this data."
        )
    return list(manifest["train"]), list(manifest["val"])


def _decode_split(
    root: Path,
    train_keys: list[str],
    val_keys: list[str],
    label_of: dict[str, int],
    classes: list[str],
    decode_folder: FolderDecoder,
    where: str,
    how: str,
) -> DataSplits:
    """Decode the files `train_keys` and `val_keys` name (relative to `root`, or absolute), labelled
    by `label_of`; the split records the keys of the files decoded, as a manifest lists them."""
    key_of = {str(root / key): key for key in label_of}

    def decode(keys: list[str]) -> ImageSet:
        return decode_folder([str(root / key) for key in keys], [label_of[key] for key in keys], classes)

    train, val = decode(train_keys), decode(val_keys)
    split = {"train": [key_of[p] for p in train.paths], "val": [key_of[p] for p in val.paths]}
    return DataSplits(train, val, f"{where}: {len(train)} train / {len(val)} val ({how})", split=split)


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
    built-in's held-out split, a data set root's val/ (or test/) folder, every image of a folder of
    class folders, or a table's held-out rows (its test rows, else its val rows; every row of a table
    without a split column)."""
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
    # A table, or a folder's metadata.csv; or root/test/metadata.csv (Hugging Face's layout).
    table = find_table(source) or (find_table(held_out) if held_out is not None else None)
    if table is not None:
        return _table_evaluation_data(read_table(table), classes, preprocessing)
    paths, labels = labelled_images(folder, classes)
    images = decode_files(paths, labels, classes, size, interpolation=interpolation, crop_pct=crop_pct)
    return images, f"{folder}: {counted(len(images), 'image')}"


def _table_evaluation_data(
    table: LabelTable, classes: list[str], preprocessing: Preprocessing
) -> tuple[ImageSet, str]:
    """A table's held-out rows decoded for a model of `classes`; its bad rows are said and listed
    among the images skipped."""
    if table.splits is None:
        keys, which = list(table.keys), "every row"
    else:
        keys, which = table.keys_in("test"), "its test rows"
        if not keys:
            keys, which = table.keys_in("val"), "its val rows"
        if not keys:
            raise DataError(
                f"{table.path} has a split column but no test or val rows to evaluate on; give rows a "
                "split of test, or drop the split column to evaluate on every row."
            )
    files, labels = _table_rows(table, keys, classes)
    _say_bad_rows(table)
    images = decode_files(
        files,
        labels,
        classes,
        preprocessing.img_size,
        interpolation=preprocessing.interpolation,
        crop_pct=preprocessing.crop_pct,
    )
    images.skipped = table.skipped_rows + images.skipped
    return images, f"{table.path}, {which}: {counted(len(images), 'image')}"
