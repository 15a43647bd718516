"""Class-folder data sets: root/<class>/<image>. Files are only ever read, never changed.

Decoded folders are cached (see `foveal.data.cache`), so a second run on an unchanged folder skips
decoding; a folder too large for memory is decoded to disk and memory-mapped (`foveal.data.mapped`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from foveal.data import cache
from foveal.data.builtin import cache_dir
from foveal.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, is_image_file
from foveal.data.imageset import ImageSet
from foveal.data.mapped import DataStorage, DecodedImageWriter, decoded_bytes, keep_in_memory
from foveal.data.resize import Interpolation
from foveal.errors import DataError
from foveal.messages import say
from foveal.runtime import available_cores

DECODE_LINE_EVERY_S = 10.0  # a slow decoding (a large folder's first run) says how far it is this often
MAX_FAILURES_IN_A_ROW: int = 50
"""Consecutive undecodable files (in path order) after which decoding stops with a DataError.

Scattered bad files are normal in scraped data sets and are skipped, but a long unbroken run of them
means the wrong folder (files that only look like images) or a failing disk, and decoding the rest
would only waste minutes before failing or training on a fraction of the data.
"""


def find_classes(root: Path) -> list[str]:
    """Sorted names of the class folders in `root`; raises DataError for a missing, empty or
    one-class root, or a class folder without images."""
    if not root.exists():
        raise DataError(
            f"data folder {root} does not exist; expected a folder of class folders "
            "(root/<class>/<image>), a table of labels (.csv or .jsonl) or a built-in name such as "
            "'digits'."
        )
    if not root.is_dir():
        raise DataError(
            f"{root} is a file; expected a folder of class folders (root/<class>/<image>) or a table "
            "of labels (a .csv or .jsonl file with columns file_name,label)."
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root} has no class folders; expected root/<class>/<image> with one folder per class, "
            "or a table of labels in it (metadata.csv with columns file_name,label)."
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
    paths: list[str],
    labels: list[int],
    classes: list[str],
    img_size: int,
    workers: int | None = None,
    *,
    interpolation: Interpolation = "bilinear",
    crop_pct: float = 1.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
    storage: DataStorage = "auto",
) -> ImageSet:
    """Decode `paths` to an ImageSet of img_size x img_size images, via the decode cache.

    Files that cannot be decoded are reported in `skipped` with the reason and left out. An unchanged
    set of files decoded before with the same settings is read from the cache instead (skipped files
    included); otherwise the files are decoded and the result is cached. Pillow releases the GIL
    while decoding, so threads use every core. A set too large for memory (see `storage`) is decoded
    into a file and its images are a memory map of that file.

    Args:
        paths: Image files, in order.
        labels: Class index of each file (into `classes`).
        classes: Class names; the returned set carries exactly these.
        img_size: Side of the square output images.
        workers: Decoding threads; default one per CPU core.
        interpolation: The resize's filter (see `resize.resize_and_crop`).
        crop_pct: Share of the resized shorter side the center crop keeps; 1 keeps it whole.
        max_pixels: Refuse images with more pixels than this (see `decode_image`).
        use_cache: Read and write the decode cache (it is also off when $FOVEAL_NO_CACHE is set).
        storage: "memory", "disk" (memory-mapped), or "auto": disk when the decoded images would
            take more than `mapped.IN_MEMORY_SHARE` of the available memory.

    Returns:
        The decodable images, uint8 (N, 3, img_size, img_size), with their labels and paths.

    Raises:
        DataError: No files were given, none could be decoded, MAX_FAILURES_IN_A_ROW files in a row
            could not be decoded, or a set kept on disk could not be written there.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if not paths:
        raise DataError("no image files to decode; expected at least one image (.jpg, .png, ...).")
    in_memory = keep_in_memory(len(paths), img_size, storage)
    key = (
        cache.cache_key(paths, labels, img_size, max_pixels, interpolation=interpolation, crop_pct=crop_pct)
        if use_cache and cache.cache_enabled()
        else None
    )
    if key is not None:
        cached = cache.load_cached(key, mapped=not in_memory)
        if cached is not None and cached.images.shape[-1] == img_size:
            # Class names do not affect decoding (the labels are in the key), so the caller's win.
            return dataclasses.replace(cached, classes=list(classes))
    decode_one = functools.partial(
        decode_image, size=img_size, interpolation=interpolation, crop_pct=crop_pct, max_pixels=max_pixels
    )
    if not in_memory:
        return _decode_to_disk(paths, labels, classes, img_size, workers, decode_one, key)
    images, skipped, cacheable = [], [], True
    for index, result in _decode_in_order(paths, decode_one, img_size, workers):
        if isinstance(result, ImageDecodeError):
            skipped.append((index, result))
            cacheable = cacheable and not _is_transient(result)
        else:
            images.append((index, result))
    image_set = ImageSet(
        images=torch.stack([image for _, image in images]),
        labels=torch.tensor([labels[i] for i, _ in images], dtype=torch.int64),
        classes=list(classes),
        paths=[paths[i] for i, _ in images],
        skipped=[(paths[i], error.reason) for i, error in skipped],
    )
    if key is not None and cacheable:
        cache.save_cached(key, image_set)
    return image_set


def _decode_to_disk(
    paths: list[str],
    labels: list[int],
    classes: list[str],
    img_size: int,
    workers: int | None,
    decode_one: Callable[[str], torch.Tensor],
    key: str | None,
) -> ImageSet:
    """Decode `paths` image by image into a cache entry and return the ImageSet mapped from it.

    Without a key (cache off) or with a failure that may go away (see `_is_transient`), the entry is
    written under a random name and unlinked once mapped: the mapping outlives the name, and no later
    run can read it.
    """
    folder = cache.cache_path(key).parent if key is not None else cache_dir() / "decoded"
    good: list[int] = []
    skipped: list[tuple[int, ImageDecodeError]] = []
    try:
        with DecodedImageWriter(folder, img_size) as writer:
            for index, result in _decode_in_order(paths, decode_one, img_size, workers):
                if isinstance(result, ImageDecodeError):
                    skipped.append((index, result))
                else:
                    writer.append(result)
                    good.append(index)
            keep = key is not None and not any(_is_transient(error) for _, error in skipped)
            entry_key = key if keep else secrets.token_hex(32)  # 64 hex digits, like a real key
            tensors = {
                "labels": torch.tensor([labels[i] for i in good]),
                **cache.file_lists([paths[i] for i in good], [(paths[i], e.reason) for i, e in skipped]),
            }
            path = writer.finish(
                cache.cache_path(entry_key), tensors, cache.entry_metadata(entry_key, classes)
            )
    except OSError as error:
        raise DataError(
            f"the decoded images ({decoded_bytes(len(paths), img_size) / 1e9:.1f} GB) are too large for "
            f"memory and could not be written to {folder}: {error}. Free disk space there, point "
            "$FOVEAL_HOME at a disk with room, or use a smaller image size."
        ) from None
    image_set = cache.read_entry(path, entry_key, mapped=True)
    if not keep:
        try:
            path.unlink()
        except OSError:  # Windows cannot unlink a mapped file; the stray entry is never looked up
            pass
    return dataclasses.replace(image_set, classes=list(classes))


def _decode_in_order(
    paths: list[str], decode_one: Callable[[str], torch.Tensor], img_size: int, workers: int | None
) -> Iterator[tuple[int, torch.Tensor | ImageDecodeError]]:
    """(index, image or error) for each of `paths` in order, decoded by `decode_one` (to img_size x
    img_size) on a thread pool.

    Raises:
        DataError: Nothing could be decoded, or MAX_FAILURES_IN_A_ROW files in a row could not.
    """
    workers = workers or available_cores()

    def decode(path: str) -> torch.Tensor | ImageDecodeError:
        try:
            return decode_one(path)
        except ImageDecodeError as error:
            return error

    failures_in_a_row, first_failure, decoded = 0, None, 0
    started = last_line = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        # map yields in path order however the threads finish, so the run of failures is in path order.
        for index, result in enumerate(pool.map(decode, paths)):
            yield index, result
            if time.monotonic() - last_line >= DECODE_LINE_EVERY_S:
                last_line = time.monotonic()
                _say_decoding(index + 1, len(paths), img_size, last_line - started)
            if isinstance(result, torch.Tensor):
                failures_in_a_row, decoded = 0, decoded + 1
                continue
            first_failure = result if failures_in_a_row == 0 else first_failure
            failures_in_a_row += 1
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                example = f"{first_failure.path}: {first_failure.reason}"
                raise DataError(
                    f"{MAX_FAILURES_IN_A_ROW} files in a row could not be decoded, e.g. {example}; "
                    "is this the right folder, or is the disk failing?"
                )
    finally:  # on an error here or in the caller, stop now rather than after decoding the whole folder
        pool.shutdown(wait=True, cancel_futures=True)
    if not decoded:
        raise DataError(
            f"none of the {len(paths)} images could be decoded (first: {paths[0]}: {first_failure.reason})."
        )


def _say_decoding(done: int, total: int, img_size: int, seconds: float) -> None:
    rate = done / seconds
    say(
        f"data: decoded {done:,} of {total:,} images to {img_size} px ({rate:,.0f} images/s, about "
        f"{(total - done) / rate:.0f} s left); they are cached, so the next run on these files skips this"
    )


def _is_transient(error: ImageDecodeError) -> bool:
    """Whether a failure may go away without the file changing, so it must not be cached.

    Bad content (not an image, truncated, too large) stays bad until the file's size or mtime
    changes, which changes the cache key. A read error from the operating system (permission denied,
    I/O error) or running out of memory can go away by itself or by a chmod, which the key does not
    see; caching it would skip a good file for good.
    """
    cause = error.__cause__
    if isinstance(cause, MemoryError):
        return True
    # A missing file is covered by the key: it is stat'ed as missing, and reappearing changes the key.
    return isinstance(cause, OSError) and cause.errno is not None and not isinstance(cause, FileNotFoundError)
