"""Defaults that fit photos (issue #33): without --time, images of PHOTO_MIN_SIDE px or more get the
ladder's hybrids, planned like a PHOTO_PLAN_SECONDS budget that buys --epochs passes; smaller images
keep EPOCH_DEFAULTS; and every start line says how long an epoch takes and how much memory it holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from synthetic import make_class_folder

from foveal.config import make_train_config
from foveal.data.sources import default_img_size
from foveal.training import train
from foveal.training.recipe import (
    BUDGET_LADDER,
    EPOCH_DEFAULTS,
    HYBRID_RECIPE,
    PHOTO_MIN_SIDE,
    PHOTO_PLAN_SECONDS,
    budget_choices,
    budget_img_size,
    is_photo_run,
    resolve_recipe,
)

CPU = torch.device("cpu")
LADDER = [rung.model for rung in BUDGET_LADDER]
START_LINE_FORECAST = re.compile(
    r"batch \d+, an epoch about [\d.]+ (s|min|h), memory about [\d.]+ (MB|GB) \(a step [\d.]+ (MB|GB), "
    r"decoded images [\d.]+ (MB|GB); [\d.]+ (MB|GB) free\)"
)


def recorded(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_photos_get_a_hybrid_at_their_own_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """224-px images, nothing but --epochs set: a rung of the ladder at 224 px (a folder this small
    affords it on any CPU), trained the hybrids' way, and the start line says what it will take."""
    photos = make_class_folder(tmp_path / "photos", per_class=8, size=224)
    run = train(data=str(photos), epochs=1, out=str(tmp_path / "runs"), report=False).run_dir
    record = recorded(run)
    chosen = record["train"]
    assert chosen["model"]["preset"] in LADDER and chosen["data"]["img_size"] == 224
    assert chosen["optim"]["optimizer"] == HYBRID_RECIPE["optimizer"] == "muon"
    assert chosen["optim"]["batch_size"] == 16  # 21 training images: the smallest batch for small data
    # Why that rung, recorded: each rung's estimated passes in the plan, and the epochs they must reach.
    estimate = record["budget_estimate"]
    assert estimate["min_passes"] == {model: 1 for model in LADDER} and estimate["training_gflops"] > 0
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("model: "))
    assert line.startswith(f"model: {chosen['model']['preset']} ") and "at 224px on cpu" in line
    assert START_LINE_FORECAST.search(line), line


def test_the_photo_plan_fits_the_epochs_in_minutes() -> None:
    """The plan takes the largest rung whose --epochs passes fit PHOTO_PLAN_SECONDS at the measured
    rate; when even the cheapest does not, it lowers the side (not below 32 px) instead."""
    epochs, images = 20, 245  # the README tour's ants and bees
    fast = budget_choices(PHOTO_PLAN_SECONDS, images, CPU, 224, 2, training_gflops=60.0, min_passes=epochs)
    assert fast["model"] == LADDER[-1] and fast["estimate"]["estimated_passes"][LADDER[-1]] >= epochs
    slow = budget_choices(PHOTO_PLAN_SECONDS, images, CPU, 224, 2, training_gflops=2.0, min_passes=epochs)
    assert slow["model"] == LADDER[0]
    assert budget_img_size(PHOTO_PLAN_SECONDS, images, 224, 2, training_gflops=60.0, min_passes=epochs) == 224
    many = budget_img_size(PHOTO_PLAN_SECONDS, 50_000, 224, 2, training_gflops=60.0, min_passes=epochs)
    assert 32 <= many < 224 and many % 8 == 0


def test_the_photo_rule_and_what_it_leaves_alone(class_folder: Path) -> None:
    """Photos are images read at PHOTO_MIN_SIDE px or more; the built-in sets (digits at 16 px, CIFAR-10
    at 32) and small images keep EPOCH_DEFAULTS, and --time and --init-from plan for themselves."""
    plain = make_train_config()
    assert default_img_size("digits") == 16 and default_img_size("cifar10") == 32
    assert not any(is_photo_run(plain, side) for side in (16, 32, 56, PHOTO_MIN_SIDE - 1))
    assert is_photo_run(plain, PHOTO_MIN_SIDE) and is_photo_run(plain, 224)
    assert not is_photo_run(make_train_config(time_budget=600.0), 224)
    assert not is_photo_run(make_train_config(init_from=str(class_folder)), 224)
    resolved, estimate = resolve_recipe(plain, 1_437, CPU, 16, 10)  # digits' training images
    assert estimate is None
    for option in ("model", "batch_size", "lr", "warmup_epochs", "optimizer", "lr_decay"):
        assert resolved.flat()[option] == EPOCH_DEFAULTS[option], option


def test_a_small_image_folder_trains_the_epoch_defaults(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "icons", per_class=6, size=32)
    run = train(data=str(folder), epochs=1, out=str(tmp_path / "runs"), report=False, quiet=True)
    chosen = recorded(run.run_dir)["train"]
    assert chosen["model"]["preset"] == EPOCH_DEFAULTS["model"] and chosen["data"]["img_size"] == 32
    assert chosen["optim"]["batch_size"] == EPOCH_DEFAULTS["batch_size"]


def test_an_explicit_model_wins_on_photos() -> None:
    """A model outside the hybrid family keeps EPOCH_DEFAULTS' recipe on photos; the ladder plans none."""
    resolved, estimate = resolve_recipe(
        make_train_config(model="foveal-tiny"), 100, CPU, 64, 3, training_gflops=50.0, photos=True
    )
    assert estimate is None and resolved.model.preset == "foveal-tiny"
    assert resolved.optim.optimizer == EPOCH_DEFAULTS["optimizer"]


def test_every_start_line_says_what_an_epoch_and_its_memory_take(
    class_folder: Path, tiny_train_options: dict, capsys: pytest.CaptureFixture
) -> None:
    train(data=str(class_folder), quiet=False, **{**tiny_train_options, "epochs": 1})
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("model: "))
    assert START_LINE_FORECAST.search(line), line


def test_measuring_the_machine_changes_no_weight(class_folder: Path, tiny_train_options: dict) -> None:
    """A quiet run that plans nothing skips the speed probe a spoken one runs for its start line: the
    probe and the memory measurement draw from no stream the run uses, so the weights are the same."""
    from safetensors.torch import load_file

    options = {**tiny_train_options, "epochs": 1}
    spoken = train(data=str(class_folder), quiet=False, **options, name="spoken").run_dir
    quiet = train(data=str(class_folder), quiet=True, **options, name="quiet").run_dir
    expected, got = (load_file(str(run / "weights" / "last.safetensors")) for run in (spoken, quiet))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
