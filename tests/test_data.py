"""Data sets: folder scanning, splits, built-ins, bad files, and augmentation randomness."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from synthetic import CLASSES, make_class_folder, png_claiming_size

import foveal
from foveal.data.augment import crop_and_flip
from foveal.data.preprocess import Preprocessing
from foveal.data.randomness import epoch_order, sample_uniform
from foveal.data.sources import default_img_size, load_evaluation_data, load_training_data
from foveal.errors import DataError


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_auto_split_is_stratified_and_reusable(class_folder: Path) -> None:
    data = load_training_data(str(class_folder), 16, val_fraction=0.25)
    assert data.classes == list(CLASSES)
    assert data.train.class_counts == [9, 9, 9] and data.val.class_counts == [3, 3, 3]
    assert not set(data.split["train"]) & set(data.split["val"])
    again = load_training_data(str(class_folder), 16, val_fraction=0.25)
    assert again.split == data.split  # a pure function of the file names
    manifest = class_folder.parent / "split.json"
    manifest.write_text(
        json.dumps({"classes": data.classes, "train": data.split["val"], "val": data.split["train"]})
    )
    swapped = load_training_data(str(class_folder), 16, split_manifest=manifest)
    assert swapped.split["train"] == data.split["val"]


def test_train_and_val_folders_are_used_as_given(split_folder: Path) -> None:
    data = load_training_data(str(split_folder), 16)
    assert (len(data.train), len(data.val)) == (30, 12)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 16, 16)
    images, description = load_evaluation_data(str(split_folder), list(CLASSES), Preprocessing(16))
    assert len(images) == 12 and "val" in description


def test_evaluation_maps_folder_names_to_the_model_classes(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "eval", per_class=2)
    (root / "circle").rename(root / "zzz")
    with pytest.raises(DataError, match="does not know"):
        load_evaluation_data(str(root), list(CLASSES), Preprocessing(16))


def test_bad_files_are_reported_skipped_and_never_changed(class_folder: Path) -> None:
    bad = class_folder / "circle"
    (bad / "empty.png").write_bytes(b"")
    (bad / "garbage.jpg").write_bytes(b"\x00\x01 not an image")
    (bad / "notes.jpg").write_text("a text file named .jpg")
    good_png = (class_folder / "square" / "000.png").read_bytes()
    (bad / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (bad / "bomb.png").write_bytes(png_claiming_size(45_000, 45_000))  # 2 GPixel header, 70 bytes
    before = tree_hashes(class_folder)
    data = load_training_data(str(class_folder), 16, val_fraction=0.25)
    skipped = dict(data.train.skipped + data.val.skipped)
    assert sorted(Path(p).name for p in skipped) == [
        "bomb.png",
        "empty.png",
        "garbage.jpg",
        "notes.jpg",
        "truncated.png",
    ]
    assert len(data.train) + len(data.val) == 36
    assert tree_hashes(class_folder) == before


def test_a_thin_strip_is_skipped_with_its_reason_and_training_goes_on(
    class_folder: Path, tiny_train_options: dict
) -> None:
    strip = class_folder / "circle" / "strip.png"
    Image.new("RGB", (2, 500)).save(strip)  # 250:1, over MAX_ASPECT_RATIO; cheap to decode either way
    options = {**tiny_train_options, "model": "foveal-nano", "epochs": 1}
    result = foveal.train(data=str(class_folder), quiet=True, **options)
    reason = (
        "extreme aspect ratio 2 x 500 (longer side more than 50 times the shorter); "
        "not a photo: crop it or resize it"
    )
    assert (result.run_dir / "skipped.txt").read_text() == f"{strip}\t{reason}\n"
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["train_images"] + config["val_images"] == 36  # every other image trained on
    assert (result.run_dir / "weights" / "best.safetensors").is_file()


@pytest.mark.parametrize("case", ["missing", "file", "empty", "one-class", "empty-class"])
def test_unusable_folders_give_a_clear_error(tmp_path: Path, case: str) -> None:
    root = tmp_path / "data"
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
    elif case == "one-class":
        make_class_folder(root, per_class=3)
        for name in CLASSES[1:]:
            for f in (root / name).iterdir():
                f.unlink()
            (root / name).rmdir()
    elif case == "empty-class":
        make_class_folder(root, per_class=3)
        (root / "hexagon").mkdir()
    expected = {
        "missing": "does not exist",
        "file": "is a file",
        "empty": "no class folders",
        "one-class": "at least 2 classes",
        "empty-class": "hexagon has no images",
    }[case]
    with pytest.raises(DataError, match=expected):
        load_training_data(str(root), 16)


def test_a_class_too_small_to_split_is_named(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "data", per_class=3)
    for extra in sorted((root / "square").iterdir())[1:]:
        extra.unlink()  # "square" is class 1: the error must say "square", not "class 1"
    with pytest.raises(DataError, match="class 'square' has 1 image; a train/val split needs at least 2"):
        load_training_data(str(root), 16)


def test_digits_builtin_has_a_fixed_held_out_split() -> None:
    data = load_training_data("digits", 16)
    assert (len(data.train), len(data.val)) == (1438, 359)  # 20% of each class, rounded
    assert data.classes == [str(i) for i in range(10)] and not data.flip_safe
    assert data.train.images.shape[1:] == (3, 16, 16) and data.train.images.max() == 255
    assert default_img_size("digits") == 16


def test_default_img_size_follows_the_images(class_folder: Path) -> None:
    assert default_img_size(str(class_folder)) == 16  # 20-px images round to a multiple of 8


def test_epoch_order_is_a_pure_function_of_seed_and_epoch() -> None:
    order = epoch_order(3, 1, 100)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.equal(order, epoch_order(3, 1, 100))
    assert not torch.equal(order, epoch_order(3, 2, 100)) and not torch.equal(order, epoch_order(4, 1, 100))


def test_augmentation_depends_only_on_seed_epoch_and_index() -> None:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    indices = torch.arange(8) + 100
    whole = crop_and_flip(images, indices, seed=1, epoch=2, padding=2, flip=True)
    # The same samples in another order and batch split get the same crops and flips.
    perm = torch.tensor([5, 2, 7, 0, 1, 3, 6, 4])
    parts = torch.cat(
        [
            crop_and_flip(images[perm[:3]], indices[perm[:3]], seed=1, epoch=2, padding=2, flip=True),
            crop_and_flip(images[perm[3:]], indices[perm[3:]], seed=1, epoch=2, padding=2, flip=True),
        ]
    )
    assert torch.equal(parts, whole[perm])
    assert not torch.equal(whole, crop_and_flip(images, indices, seed=1, epoch=3, padding=2, flip=True))


def test_crop_and_flip_moves_and_mirrors_pixels() -> None:
    image = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    image[0, 0, 0, 0] = 255  # one bright corner
    seen = set()
    for idx in range(64):
        out = crop_and_flip(image, torch.tensor([idx]), seed=0, epoch=1, padding=1, flip=True)
        assert out.shape == (1, 1, 4, 4) and int(out.sum()) in (0, 255)
        seen.add(tuple(out[0, 0].nonzero().flatten().tolist()))
    assert len(seen) >= 5  # shifted and mirrored positions (or cropped away)
    assert ((0, 3) in seen or (1, 3) in seen) and (1, 1) in seen


def test_alternating_flips_show_each_image_both_ways_in_consecutive_epochs() -> None:
    images = (torch.arange(64 * 16) % 251).to(torch.uint8).reshape(64, 1, 4, 4)  # no image symmetric
    indices = torch.arange(64)

    def mirrored(epoch: int, alternate: bool) -> torch.Tensor:  # (64,) bool
        out = crop_and_flip(images, indices, 3, epoch, padding=0, flip=True, alternate_flips=alternate)
        return (out != images).flatten(1).any(dim=1)

    first = mirrored(0, True)
    assert 16 < int(first.sum()) < 48  # a coin per image in the first epoch
    assert torch.equal(first, mirrored(0, False))  # the same coins as random flips' first epoch
    assert torch.equal(mirrored(1, True), ~first) and torch.equal(mirrored(2, True), first)
    assert torch.equal(mirrored(3, True), ~first)
    assert not torch.equal(mirrored(2, False), first)  # random flips draw again each epoch


def test_sample_uniform_is_uniform_enough() -> None:
    values = sample_uniform(0, 1, 1, torch.arange(20_000))
    assert 0.0 <= float(values.min()) and float(values.max()) < 1.0
    assert abs(float(values.mean()) - 0.5) < 0.01
