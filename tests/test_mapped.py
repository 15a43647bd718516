"""Decoded images on disk, memory-mapped: same pixels as in memory, a real mapping, bounded memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic import make_class_folder

import foveal.data.folders as folders
from foveal.data import cache, mapped
from foveal.data.folders import decode_files, find_classes, list_images
from foveal.data.imageset import ImageSet
from foveal.errors import DataError
from foveal.training import train

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


pytestmark = pytest.mark.usefixtures("foveal_home")  # each test: its own empty cache (conftest)


@pytest.fixture
def folder_with_bad_files(tmp_path: Path) -> Path:
    root = make_class_folder(tmp_path / "shapes", per_class=6)
    (root / "circle" / "broken.png").write_bytes(b"not an image")
    return root


def decode(root: Path, storage: str) -> ImageSet:
    classes = find_classes(root)
    paths, labels = list_images(root, classes)
    return decode_files(paths, labels, classes, 16, workers=2, storage=storage)


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory map holds `tensor`'s data, from /proc/self/maps; None if anonymous."""
    address = tensor.data_ptr()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(part, 16) for part in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


def assert_same(a: ImageSet, b: ImageSet) -> None:
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (a.classes, a.paths, a.skipped) == (b.classes, b.paths, b.skipped)


@linux_only
def test_disk_storage_maps_the_cache_entry_and_gives_the_same_images(
    folder_with_bad_files: Path, foveal_home: Path
) -> None:
    on_disk = decode(folder_with_bad_files, "disk")
    entries = list((foveal_home / "decoded").glob("*.safetensors"))
    assert len(entries) == 1 and not list((foveal_home / "decoded").glob(".decoding-*"))
    assert mapped_file(on_disk.images) == str(entries[0])
    assert len(on_disk) == 18 and [Path(p).name for p, _ in on_disk.skipped] == ["broken.png"]

    in_memory = decode_files(*list_images(folder_with_bad_files, on_disk.classes), on_disk.classes, 16)
    assert mapped_file(in_memory.images) is None  # read from the same entry, but copied
    assert_same(on_disk, in_memory)
    with_cache_off = decode_files(
        *list_images(folder_with_bad_files, on_disk.classes), on_disk.classes, 16, use_cache=False
    )
    assert_same(on_disk, with_cache_off)
    # The entry is a standard safetensors file, whichever writer wrote it.
    tensors = load_file(str(entries[0]))
    assert torch.equal(tensors["images"], on_disk.images) and torch.equal(tensors["labels"], on_disk.labels)


@linux_only
def test_a_second_disk_decode_maps_the_entry_without_decoding(
    folder_with_bad_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = decode(folder_with_bad_files, "disk")

    def fail(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decode_image was called; expected a cache hit")

    monkeypatch.setattr(folders, "decode_image", fail)
    second = decode(folder_with_bad_files, "disk")
    assert mapped_file(second.images) is not None
    assert_same(first, second)


@linux_only
def test_with_the_cache_off_the_mapped_file_leaves_nothing_behind(
    folder_with_bad_files: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOVEAL_NO_CACHE", "1")
    on_disk = decode(folder_with_bad_files, "disk")
    assert mapped_file(on_disk.images).endswith("(deleted)")  # unlinked once mapped
    assert list((foveal_home / "decoded").iterdir()) == []
    assert on_disk.images.float().mean() > 0  # and still readable


def test_auto_maps_a_set_larger_than_half_the_available_memory(
    folder_with_bad_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = mapped.decoded_bytes(19, 16)  # 19 files of 16 x 16 px
    monkeypatch.setattr(mapped, "available_memory", lambda: 2 * size)
    assert mapped.keep_in_memory(19, 16)  # exactly half: still fits
    monkeypatch.setattr(mapped, "available_memory", lambda: 2 * size - 1)
    assert not mapped.keep_in_memory(19, 16)
    if sys.platform.startswith("linux"):
        assert mapped_file(decode(folder_with_bad_files, "auto").images) is not None
    monkeypatch.setattr(mapped, "available_memory", lambda: None)  # unknown: keep in memory
    assert mapped.keep_in_memory(10**9, 224) and not mapped.keep_in_memory(1, 16, "disk")
    with pytest.raises(ValueError, match="auto"):
        mapped.keep_in_memory(1, 16, "ram")  # type: ignore[arg-type]


def test_available_memory_is_read_on_this_machine() -> None:
    available = mapped.available_memory()
    assert available is not None and 10**7 < available < 10**15


def test_a_disk_set_that_cannot_be_written_is_a_clear_error(
    folder_with_bad_files: Path, foveal_home: Path
) -> None:
    foveal_home.write_text("a file where the cache folder should be")  # fails for root as well
    with pytest.raises(DataError, match="too large for memory and could not be written.*FOVEAL_HOME"):
        decode(folder_with_bad_files, "disk")
    assert foveal_home.read_text() == "a file where the cache folder should be"


def test_a_failure_while_writing_leaves_no_scratch_or_entry(
    folder_with_bad_files: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: mapped.DecodedImageWriter, image: torch.Tensor) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mapped.DecodedImageWriter, "append", disk_full)
    with pytest.raises(DataError, match="No space left on device"):
        decode(folder_with_bad_files, "disk")
    assert list((foveal_home / "decoded").iterdir()) == []
    assert cache.cache_enabled()


def test_training_from_disk_is_bit_identical_to_training_from_memory(
    tmp_path: Path, tiny_train_options: dict
) -> None:
    data = make_class_folder(tmp_path / "shapes")
    options = {**tiny_train_options, "epochs": 1, "quiet": True}
    runs = [train(data=str(data), data_storage=storage, **options).run_dir for storage in ("memory", "disk")]
    weights = [load_file(str(run / "weights" / "last.safetensors")) for run in runs]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    mapped_flags = [json.loads((run / "config.json").read_text())["images_memory_mapped"] for run in runs]
    assert mapped_flags == [False, True]


def test_file_lists_are_tensors_so_the_header_stays_small(
    folder_with_bad_files: Path, foveal_home: Path
) -> None:
    """safetensors refuses headers over 100 MB; a million paths in the header would pass that."""
    decode(folder_with_bad_files, "disk")
    decode_files(*list_images(folder_with_bad_files, find_classes(folder_with_bad_files)),
                 find_classes(folder_with_bad_files), 24)  # fmt: skip
    entries = list((foveal_home / "decoded").glob("*.safetensors"))
    assert len(entries) == 2  # one written by each writer
    for entry in entries:
        header_size = int.from_bytes(entry.read_bytes()[:8], "little")
        assert header_size < 600 and "shapes" not in entry.read_bytes()[8 : 8 + header_size].decode()
