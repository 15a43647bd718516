"""Decoded images kept on disk and memory-mapped, for data sets that do not fit in memory.

A folder whose decoded images would take more than IN_MEMORY_SHARE of the memory available is not
decoded into a tensor: each image is appended to a scratch file as it is decoded, the scratch file
becomes a decode-cache entry (the same safetensors layout `foveal.data.cache` writes), and training
reads batches straight from that file's memory map. The operating system then keeps the hot pages
in memory and drops the rest, so memory use stays bounded whatever the data set's size; a run on a
data set that fits in memory is unchanged (and bit-identical either way: the bytes are the same).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Literal

import torch

from foveal.errors import DataError
from foveal.io import atomic_write

DataStorage = Literal["auto", "memory", "disk"]
STORAGE_CHOICES: tuple[str, ...] = ("auto", "memory", "disk")

IN_MEMORY_SHARE = 0.5
"""Decoded images up to this share of the available memory are held in memory; larger sets are mapped.
Half leaves room for the model, the optimizer, the batches in flight and the rest of the system."""

_SAFETENSORS_DTYPES = {torch.int64: ("I64", 8), torch.uint8: ("U8", 1)}  # name, bytes per element
_COPY_CHUNK = 16 << 20  # bytes per read when the scratch file is copied into the entry
_MAX_HEADER_BYTES = 100_000_000  # the largest header safetensors itself accepts


def decoded_bytes(count: int, img_size: int) -> int:
    """Memory that `count` decoded uint8 RGB images of side `img_size` take."""
    return count * 3 * img_size * img_size


def available_memory() -> int | None:
    """Bytes of memory this process can still get without swapping, None if unknown.

    The system's MemAvailable, or less when the process sits in a control group with a lower memory
    limit (a container started with --memory, a Slurm job): there the group's limit is what counts.
    """
    limits = [_system_available(), _cgroup_headroom()]
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def _system_available() -> int | None:
    """Linux MemAvailable; elsewhere free physical pages (an underestimate: it omits the page cache)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_headroom() -> int | None:
    """The memory limit of this process's control group minus what the group uses, None if unlimited.

    /proc/self/cgroup names the group: "0::/path" (cgroup v2) or "N:memory:/path" (v1). Usage counts
    the group's page cache; its inactive part is subtracted (as `docker stats` does), since the
    kernel reclaims it before running out.
    """
    try:
        with open("/proc/self/cgroup") as groups:
            lines = [line.rstrip("\n").split(":", 2) for line in groups]
    except OSError:
        return None
    for _, controllers, group in (line for line in lines if len(line) == 3):
        if controllers == "":
            folder, names = Path("/sys/fs/cgroup", group.lstrip("/")), _CGROUP_V2
        elif "memory" in controllers.split(","):
            folder, names = Path("/sys/fs/cgroup/memory", group.lstrip("/")), _CGROUP_V1
        else:
            continue
        limit_file, usage_file, inactive_key = names
        try:
            limit = (folder / limit_file).read_text().strip()
            usage = int((folder / usage_file).read_text())
            stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            inactive = int(stat.get(inactive_key, 0))
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or v1's huge number: no limit
            return max(0, int(limit) - usage + inactive)
    return None


# (limit file, usage file, reclaimable page-cache key of memory.stat) for each cgroup version
_CGROUP_V2 = ("memory.max", "memory.current", "inactive_file")
_CGROUP_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def check_fits_in_memory(count: int, img_size: int, *, mappable: bool) -> None:
    """Refuse, before decoding, `count` images of side `img_size` that are to be held in memory but
    would take more than IN_MEMORY_SHARE of the available memory (decoding holds them twice for a
    moment: the images, then the tensor stacked from them); nothing is refused where it is unknown.

    Args:
        mappable: whether they could be memory-mapped from disk instead (a folder's images; a built-in
            set is always held in memory), which the message then offers.

    Raises:
        DataError: they would not fit.
    """
    available = available_memory()
    need = decoded_bytes(count, img_size)
    if available is None or need <= IN_MEMORY_SHARE * available:
        return
    side = math.isqrt(int(IN_MEMORY_SHARE * available) // (3 * count)) // 8 * 8  # px, a multiple of 8
    fixes = [f"--img-size {side} or less"] if side >= 8 else []
    if mappable:
        fixes.append("--data-storage auto (memory-mapped from disk)")
    raise DataError(
        f"the {count:,} decoded images at {img_size}px would take {need / 1e9:.1f} GB in memory, more "
        f"than {IN_MEMORY_SHARE:.0%} of the {available / 1e9:.1f} GB available; use "
        f"{' or '.join(fixes) or 'fewer images'}."
    )


def keep_in_memory(count: int, img_size: int, storage: DataStorage = "auto") -> bool:
    """Whether `count` images of side `img_size` are decoded into memory (True) or mapped from disk.

    Args:
        count: Number of image files to decode.
        img_size: Side of the decoded square images.
        storage: "memory" or "disk" to force either ("memory" refused by `check_fits_in_memory` when
            the set would not fit); "auto" maps a set larger than IN_MEMORY_SHARE of the available
            memory and keeps anything smaller (or anything, when memory is unknown).
    """
    if storage not in STORAGE_CHOICES:
        raise ValueError(f"storage must be one of {STORAGE_CHOICES}, got {storage!r}")
    if storage == "memory":
        check_fits_in_memory(count, img_size, mappable=True)
    if storage != "auto":
        return storage == "memory"
    available = available_memory()
    return available is None or decoded_bytes(count, img_size) <= IN_MEMORY_SHARE * available


def map_images(path: Path) -> torch.Tensor:
    """The uint8 "images" tensor of a safetensors file as a private, read-on-demand memory map of it.

    The map is advised as randomly accessed (MADV_RANDOM): training gathers images in shuffled
    order, and the kernel's default read-around (up to read_ahead_kb, 8 MB on the reference
    machine) would read megabytes for every 27 kB image it faults in. On a 1.4 GB entry under a
    1 GB memory limit that made batches 30x slower (docs/benchmarks.md).

    Raises:
        ValueError, OSError: `path` is not a safetensors file with a uint8 "images" tensor.
    """
    with open(path, "rb") as file:
        (header_size,) = struct.unpack("<Q", file.read(8))
        if header_size > _MAX_HEADER_BYTES:
            raise ValueError(f"a safetensors header of {header_size} bytes is not believable")
        entry = json.loads(file.read(header_size))["images"]
        start, end = entry["data_offsets"]
        shape = [int(side) for side in entry["shape"]]
        if entry["dtype"] != "U8" or end - start != math.prod(shape):
            raise ValueError(f"images are {entry['dtype']} {shape} in {end - start} bytes, expected uint8")
        # ACCESS_COPY is MAP_PRIVATE: writable, so torch takes it without a warning, but a write would
        # only ever change this process's copy of a page, never the cache file.
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mapping, "madvise"):  # not on Windows
        mapping.madvise(mmap.MADV_RANDOM)
    offset = 8 + header_size + start
    return torch.frombuffer(mapping, dtype=torch.uint8, offset=offset, count=end - start).view(shape)


class DecodedImageWriter:
    """Appends decoded images to a scratch file, then writes them out as one safetensors cache entry.

    Only one image is in memory at a time. Use it as a context manager: the scratch file is removed
    on leaving, whether or not `finish` ran.
    """

    def __init__(self, folder: Path, img_size: int) -> None:
        """Start an empty scratch file in `folder` (the entry's folder, so the final copy stays on one
        disk) for images of shape (3, img_size, img_size); raises OSError if it cannot be created."""
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".decoding-", suffix=".raw", dir=folder)
        self._scratch = os.fdopen(fd, "wb")
        self._scratch_path = Path(name)
        self.image_shape = (3, img_size, img_size)
        self.count = 0

    def __enter__(self) -> DecodedImageWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._scratch.close()
        self._scratch_path.unlink(missing_ok=True)

    def append(self, image: torch.Tensor) -> None:
        """Add one uint8 (3, S, S) image after the previous ones."""
        if image.dtype != torch.uint8 or tuple(image.shape) != self.image_shape:
            got = f"{image.dtype} {tuple(image.shape)}"
            raise ValueError(f"expected a uint8 {self.image_shape} image, got {got}")
        self._scratch.write(image.contiguous().numpy().data)
        self.count += 1

    def finish(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
        """Write the entry `path` atomically: `tensors` (the small ones: int64 labels, uint8 lists),
        then the images appended so far as "images", with the safetensors `metadata` (strings)."""
        header: dict[str, object] = {"__metadata__": metadata}
        offset = 0
        # int64 tensors first, from offset 0, so they stay 8-byte aligned; byte tensors after them.
        ordered = sorted(tensors.items(), key=lambda item: -_SAFETENSORS_DTYPES[item[1].dtype][1])
        for name, tensor in ordered:
            dtype, size = _SAFETENSORS_DTYPES[tensor.dtype]
            end = offset + tensor.numel() * size
            header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, end]}
            offset = end
        image_bytes = self.count * math.prod(self.image_shape)
        header["images"] = {
            "dtype": "U8",
            "shape": [self.count, *self.image_shape],
            "data_offsets": [offset, offset + image_bytes],
        }
        # The safetensors layout: an 8-byte little-endian header length, the JSON header padded with
        # spaces to a multiple of 8 (so the data, and the int64 tensors at its start, are aligned).
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        self._scratch.close()

        def write(temp: str) -> None:
            with open(temp, "wb") as out, open(self._scratch_path, "rb") as images:
                out.write(struct.pack("<Q", len(encoded)))
                out.write(encoded)
                for _, tensor in ordered:
                    out.write(tensor.contiguous().numpy().data)
                shutil.copyfileobj(images, out, _COPY_CHUNK)

        return atomic_write(path, write)
