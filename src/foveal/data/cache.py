"""An on-disk cache of decoded class-folder images, so a second run on the same folder skips decoding.

Decoding is the slow part of loading a folder (CIFAR-10's 60,000 JPEGs take most of a minute on two
cores), while the result is a pure function of the files' contents and the decode settings. Each
decoded `ImageSet` is stored as one safetensors file under `cache_dir() / "decoded"`, named by
`cache_key`: a digest of the decode settings and of every file's path, label, size and modification
time. Changing, adding, removing or relabelling a file gives a new key, so the folder is decoded
again; the stale entry is simply never read.

A data set too large to hold in memory is decoded straight into its entry (`foveal.data.mapped`)
and trained on from the memory-mapped file, so the operating system pages images in and out.

The cache is only an optimisation: a missing, corrupt or unreadable entry is a miss, an unwritable
cache folder is ignored, and `FOVEAL_NO_CACHE=1` turns it off. It lives in Foveal's own cache
folder ($FOVEAL_HOME, else ~/.cache/foveal), never in the user's data folder, and it is read with
safetensors and JSON only, never pickle, so a planted cache file cannot run code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

import PIL
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from foveal.data import decode, resize
from foveal.data.builtin import cache_dir
from foveal.data.imageset import ImageSet
from foveal.data.mapped import map_images
from foveal.io import atomic_write

CACHE_FORMAT: str = "foveal-decoded-v2"
"""Layout of a cache file; bump it when the stored tensors or metadata change meaning."""

NO_CACHE_ENV: str = "FOVEAL_NO_CACHE"
"""Environment variable that, set to 1 (or true/yes/on), disables reading and writing the cache."""

_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def cache_enabled() -> bool:
    """Whether the decoded-image cache may be read and written (i.e. $FOVEAL_NO_CACHE is not set).

    Returns:
        False when FOVEAL_NO_CACHE is set to anything but "", "0", "false", "no" or "off".
    """
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() in _FALSE_WORDS


def cache_path(key: str) -> Path:
    """The file that holds the cache entry for `key`.

    Args:
        key: A digest from `cache_key`.

    Returns:
        cache_dir() / "decoded" / "<key>.safetensors".

    Raises:
        ValueError: `key` is not a lowercase sha256 hex digest (so it can never name a path elsewhere).
    """
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
    return cache_dir() / "decoded" / f"{key}.safetensors"


def cache_key(
    paths: list[str],
    labels: list[int],
    img_size: int,
    max_pixels: int,
    *,
    interpolation: resize.Interpolation = "bilinear",
    crop_pct: float = 1.0,
) -> str:
    """A digest that changes whenever decoding `paths` could give a different ImageSet.

    It covers the cache format, the decoding code (Pillow's version and foveal's decode and resize
    modules), `img_size`, `max_pixels`, the resize's `interpolation` and `crop_pct` (a folder decoded
    bilinear is never read back for a bicubic model), and for each file in order: its path as given
    and as an absolute path, its label, and its size in bytes and modification time in nanoseconds.
    Files are stat'ed, not read, so 60,000 files take well under a second on a local disk.

    Call this before decoding: a file that changes while it is being decoded then leaves an entry
    under its old stat, which is never looked up again, rather than stale pixels under its new one.

    Args:
        paths: Image files, in the order they will be decoded.
        labels: Class index of each file.
        img_size: Side of the decoded square images.
        max_pixels: Largest image, in pixels, that is decoded.
        interpolation: The resize's filter (see `resize.resize_and_crop`).
        crop_pct: Share of the resized shorter side the center crop keeps.

    Returns:
        A sha256 hex digest (64 lowercase hex characters).

    Raises:
        ValueError: `paths` and `labels` differ in length.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    digest = hashlib.sha256()
    settings = f"{int(img_size)}\0{int(max_pixels)}\0{interpolation}\0{float(crop_pct)!r}"
    digest.update(f"{CACHE_FORMAT}\0{_decoder_version()}\0{settings}\0".encode())
    for path, label in zip(paths, labels):
        try:
            info = os.stat(path)
            size, mtime = info.st_size, info.st_mtime_ns
        except (
            OSError,
            ValueError,
        ):  # missing or unreadable now; decoding reports it, and it changes the key
            size, mtime = -1, -1
        # NUL cannot occur in a path, so the fields cannot run into each other; the path as given is
        # hashed too because it is what ImageSet.paths hands back on a hit.
        digest.update(os.fsencode(path))
        digest.update(b"\0")
        digest.update(os.fsencode(os.path.abspath(path)))
        digest.update(f"\0{int(label)}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def load_cached(key: str, *, mapped: bool = False) -> ImageSet | None:
    """The ImageSet stored under `key`, or None on a miss.

    A file that cannot be read or is not a well-formed entry counts as a miss and is deleted (when
    possible) so that the next save replaces it; this never raises for a bad cache file.

    Args:
        key: A digest from `cache_key`.
        mapped: Leave the images in the memory-mapped file instead of copying them into memory (for
            data sets larger than memory; see `read_entry`).

    Returns:
        The cached images, labels, classes, paths and skipped files; None when the cache is disabled,
        has no entry for `key` or the entry is unusable.
    """
    if not cache_enabled():
        return None
    path = cache_path(key)
    try:
        return read_entry(path, key, mapped=mapped)
    except FileNotFoundError:
        return None
    except Exception:  # any failure to read the cache is a miss, never the user's problem
        _discard(path)
        return None


def save_cached(key: str, image_set: ImageSet) -> Path | None:
    """Store `image_set` under `key`, atomically; does nothing when it cannot.

    A cache folder that cannot be written (read-only home, full disk) is silently ignored: the cache
    only saves time, and the run has its decoded images either way.

    Args:
        key: A digest from `cache_key`.
        image_set: Decoded images, uint8 (N, 3, S, S), with int64 labels.

    Returns:
        The cache file written, or None when the cache is disabled or could not be written.
    """
    if not cache_enabled():
        return None
    path = cache_path(key)
    tensors = {
        "images": image_set.images.detach().to("cpu", torch.uint8).contiguous(),
        "labels": image_set.labels.detach().to("cpu", torch.int64).contiguous(),
        **file_lists(image_set.paths, image_set.skipped),
    }
    metadata = entry_metadata(key, image_set.classes)
    try:
        atomic_write(path, lambda temp: save_file(tensors, temp, metadata=metadata))
    except (OSError, SafetensorError):
        return None
    return path


def entry_metadata(key: str, classes: list[str]) -> dict[str, str]:
    """The safetensors metadata (header strings) of a cache entry."""
    return {"format": CACHE_FORMAT, "key": key, "classes": json.dumps(list(classes))}


def file_lists(paths: list[str], skipped: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The entry's file lists as uint8 tensors of ASCII JSON ("paths", "skipped").

    They are tensors, not header metadata, because safetensors refuses headers over 100 MB, which the
    paths of a million-image data set (the kind that needs `mapped`) would pass. ASCII JSON keeps
    undecodable file names (surrogate escapes) intact.
    """

    def encode(value: object) -> torch.Tensor:
        return torch.frombuffer(bytearray(json.dumps(value).encode("ascii")), dtype=torch.uint8)

    return {"paths": encode(list(paths)), "skipped": encode([[p, reason] for p, reason in skipped])}


def read_entry(path: Path, key: str, *, mapped: bool = False) -> ImageSet:
    """Read and check one cache file; raises on anything that is not a well-formed entry for `key`.

    Args:
        path: A file written by `save_cached` or `foveal.data.mapped.DecodedImageWriter`.
        key: The digest the entry must carry.
        mapped: Keep the images in a private memory map of the file (`mapped.map_images`): pages are
            read on first use and the kernel may drop them again, so a data set larger than memory
            still trains. The cache is only ever replaced by renaming a new file over it, which leaves
            a mapped file intact. False copies the images, so nothing that later happens to the file
            can affect them.
    """
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != CACHE_FORMAT or metadata.get("key") != key:
            raise ValueError("not an entry of this cache format or key")
        classes = _string_list(json.loads(metadata["classes"]))
        paths = _string_list(_decode_list(handle.get_tensor("paths")))
        skipped = [tuple(_string_list(pair)) for pair in _decode_list(handle.get_tensor("skipped"))]
        # safetensors maps the file; a copy keeps the images independent of it, so a later replacement
        # or truncation of the file can never change or crash a running training.
        images = map_images(path) if mapped else handle.get_tensor("images").clone()
        labels = handle.get_tensor("labels").clone()
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images are {images.dtype} {tuple(images.shape)}, expected uint8 (N, 3, S, S)")
    if images.shape[2] != images.shape[3] or labels.dtype != torch.int64 or labels.ndim != 1:
        raise ValueError("images are not square or labels are not int64 (N,)")
    if not (images.shape[0] == labels.shape[0] == len(paths)) or any(len(pair) != 2 for pair in skipped):
        raise ValueError("images, labels, paths and skipped do not match")
    return ImageSet(images, labels, classes, paths, skipped, mapped=mapped)  # type: ignore[arg-type]


@functools.cache
def _decoder_version() -> str:
    """Identifies the code that turns a file into pixels, so upgrading it invalidates old entries.

    The digest of foveal's decode and resize modules stands in for a hand-bumped version number, which
    is easy to forget when resizing or colour handling changes.
    """
    digest = hashlib.sha256()
    try:
        for module in (decode, resize):
            digest.update(Path(module.__file__).read_bytes())
        source = digest.hexdigest()
    except (OSError, TypeError):  # no source file (e.g. frozen); Pillow's version still counts
        source = "unknown"
    return f"pillow={PIL.__version__};decode={source}"


def _decode_list(tensor: torch.Tensor) -> object:
    """The JSON value that `file_lists` stored in a uint8 tensor."""
    if tensor.dtype != torch.uint8 or tensor.ndim != 1:
        raise ValueError(f"expected a uint8 (N,) tensor of JSON, got {tensor.dtype} {tuple(tensor.shape)}")
    return json.loads(tensor.numpy().tobytes().decode("ascii"))


def _string_list(value: object) -> list[str]:
    """`value` if it is a list of strings; raises ValueError otherwise."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return value


def _discard(path: Path) -> None:
    """Delete a bad cache file if possible; a failure is ignored (the next save replaces it)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
