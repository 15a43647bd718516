"""The decoded-image cache: hits, misses on change, corrupt entries, opting out, and the failure guard."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from synthetic import make_class_folder

import foveal.data.folders as folders
from foveal.data import cache
from foveal.data.folders import MAX_FAILURES_IN_A_ROW, decode_files, find_classes, list_images
from foveal.data.imageset import ImageSet
from foveal.errors import DataError

pytestmark = pytest.mark.usefixtures("foveal_home")  # each test: its own empty cache (conftest)


def decode_folder(root: Path, img_size: int = 16) -> ImageSet:
    classes = find_classes(root)
    paths, labels = list_images(root, classes)
    return decode_files(paths, labels, classes, img_size, workers=2)


def cache_files(home: Path) -> list[Path]:
    folder = home / "decoded"
    return sorted(folder.glob("*.safetensors")) if folder.exists() else []


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("decode_image was called; expected a cache hit")

    monkeypatch.setattr(folders, "decode_image", fail)


def count_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = folders.decode_image

    def counting(source: str, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(folders, "decode_image", counting)
    return calls


def assert_same(a: ImageSet, b: ImageSet) -> None:
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels) and a.labels.dtype == torch.int64
    assert a.paths == b.paths and a.classes == b.classes
    assert [tuple(s) for s in a.skipped] == [tuple(s) for s in b.skipped]


def add_bad_files(folder: Path) -> None:
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(b"\x00\x01 not an image")


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_second_decode_is_a_cache_hit_and_leaves_user_files_alone(
    tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_class_folder(tmp_path / "data", per_class=4)
    add_bad_files(root / "circle")
    before = tree_hashes(root)
    first = decode_folder(root)
    assert len(first) == 12 and len(first.skipped) == 2 and len(cache_files(foveal_home)) == 1
    forbid_decoding(monkeypatch)
    second = decode_folder(root)
    assert_same(first, second)
    assert sorted(Path(p).name for p, _ in second.skipped) == ["empty.png", "garbage.jpg"]
    assert all(isinstance(p, str) and isinstance(r, str) for p, r in second.skipped)
    assert tree_hashes(root) == before  # nothing written, changed or added in the data folder


def test_a_changed_file_forces_a_new_decode(
    tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_class_folder(tmp_path / "data", per_class=4)
    first = decode_folder(root)
    changed = root / "square" / "001.png"
    changed.write_bytes((root / "circle" / "000.png").read_bytes())  # other bytes, other pixels
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    calls = count_decoding(monkeypatch)
    second = decode_folder(root)
    assert len(calls) == 12  # the whole folder again, not only the file that changed
    index = second.paths.index(str(changed))
    assert not torch.equal(first.images[index], second.images[index])
    assert len(cache_files(foveal_home)) == 2


def test_added_or_relabelled_files_are_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    classes = find_classes(root)
    paths, labels = list_images(root, classes)
    decode_files(paths, labels, classes, 16)
    key = cache.cache_key(paths, labels, 16, folders.DEFAULT_MAX_PIXELS)
    assert cache.cache_key(paths, labels, 16, folders.DEFAULT_MAX_PIXELS) == key  # stable
    assert cache.cache_key(paths[:-1], labels[:-1], 16, folders.DEFAULT_MAX_PIXELS) != key
    assert cache.cache_key(paths, [1 - labels[0], *labels[1:]], 16, folders.DEFAULT_MAX_PIXELS) != key
    assert cache.cache_key(paths, labels, 16, 1000) != key
    calls = count_decoding(monkeypatch)
    relabelled = decode_files(paths, [2 - label for label in labels], classes, 16)
    assert len(calls) == len(paths) and relabelled.labels.tolist() == [2 - label for label in labels]


def test_a_corrupt_cache_file_is_a_miss_and_is_rewritten(
    tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    first = decode_folder(root)
    [entry] = cache_files(foveal_home)
    good_bytes = entry.read_bytes()
    calls = count_decoding(monkeypatch)
    for corrupt in (b"not a safetensors file", good_bytes[: len(good_bytes) // 2], b""):
        entry.write_bytes(corrupt)
        calls.clear()
        assert_same(first, decode_folder(root))
        assert len(calls) == 9
        rewritten = cache.load_cached(entry.stem)  # a whole, valid entry again
        assert rewritten is not None
        assert_same(first, rewritten)
    forbid_decoding(monkeypatch)
    assert_same(first, decode_folder(root))


def test_no_cache_env_reads_and_writes_nothing(
    tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    decode_folder(root)
    assert len(cache_files(foveal_home)) == 1
    monkeypatch.setenv("FOVEAL_NO_CACHE", "1")
    calls = count_decoding(monkeypatch)
    decode_folder(root, img_size=12)  # a new entry, were the cache on
    decode_folder(root)  # a hit, were the cache on
    assert len(calls) == 18 and len(cache_files(foveal_home)) == 1


def test_use_cache_false_bypasses_the_cache(tmp_path: Path, foveal_home: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    classes = find_classes(root)
    decode_files(*list_images(root, classes), classes, 16, use_cache=False)
    assert cache_files(foveal_home) == []


def test_a_different_img_size_is_a_different_entry(
    tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    small, large = decode_folder(root, img_size=8), decode_folder(root, img_size=16)
    assert small.images.shape[-1] == 8 and large.images.shape[-1] == 16
    assert len(cache_files(foveal_home)) == 2
    forbid_decoding(monkeypatch)
    assert_same(small, decode_folder(root, img_size=8))
    assert_same(large, decode_folder(root, img_size=16))


def test_an_unwritable_cache_folder_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FOVEAL_HOME", str(blocker))
    root = make_class_folder(tmp_path / "data", per_class=3)
    assert len(decode_folder(root)) == 9
    assert len(decode_folder(root)) == 9


def test_loading_never_unpickles(tmp_path: Path, foveal_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("pickle used")

    root = make_class_folder(tmp_path / "data", per_class=3)
    first = decode_folder(root)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    forbid_decoding(monkeypatch)
    assert_same(first, decode_folder(root))


def test_a_long_run_of_bad_files_stops_decoding(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=5)
    for i in range(60):  # sorts before the good files of its class
        (root / "circle" / f"0bad{i:03d}.jpg").write_bytes(b"not an image")
    with pytest.raises(
        DataError, match=f"{MAX_FAILURES_IN_A_ROW} files in a row could not be decoded"
    ) as info:
        decode_folder(root)
    assert "0bad000.jpg" in str(info.value) and "right folder" in str(info.value)


def test_scattered_bad_files_are_skipped(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=12)
    for i in range(10):  # between the good files: 000.png, 000x.jpg, 001.png, ...
        (root / ("circle", "square", "triangle")[i % 3] / f"{i:03d}x.jpg").write_bytes(b"not an image")
    data = decode_folder(root)
    assert len(data) == 36 and len(data.skipped) == 10


def test_cache_key_of_many_files_is_fast(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    paths = []
    for i in range(5000):
        path = folder / f"{i:05d}.jpg"
        path.touch()
        paths.append(str(path))
    import time

    start = time.perf_counter()
    cache.cache_key(paths, [0] * len(paths), 32, folders.DEFAULT_MAX_PIXELS)
    assert time.perf_counter() - start < 1.0  # 60,000 files: about 12 times this
