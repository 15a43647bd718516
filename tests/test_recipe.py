"""The default recipe: fixed with --epochs, chosen from the budget and data with --time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from foveal.config import make_train_config
from foveal.models import create_model
from foveal.training import train
from foveal.training.footprint import (
    BACKWARD_FACTOR,
    OPTIMIZER_COPIES,
    STEP_MEMORY_SHARE,
    activation_bytes_per_image,
)
from foveal.training.recipe import (
    BUDGET_LADDER,
    EPOCH_DEFAULTS,
    FULL_WIDTH_MIN_PASSES,
    FULL_WIDTH_MIN_PASSES_PHOTOS,
    MAX_BUDGET_TOKENS,
    budget_choices,
    budget_img_size,
    resolve_recipe,
    tokens_per_image,
)

CPU = torch.device("cpu")


def test_epoch_runs_get_the_fixed_defaults_and_keep_what_the_user_set() -> None:
    resolved, estimate = resolve_recipe(make_train_config(batch_size=16), 1000, CPU, 32, 10)
    assert estimate is None  # nothing measured without a budget
    assert resolved.optim.batch_size == 16  # set by the user: kept
    assert resolved.model.preset == EPOCH_DEFAULTS["model"]
    assert resolved.optim.ema_decay == EPOCH_DEFAULTS["ema_decay"]
    assert resolved.optim.warmup_epochs == EPOCH_DEFAULTS["warmup_epochs"]


def test_a_bigger_budget_per_image_buys_a_bigger_model() -> None:
    ladder = [rung.model for rung in BUDGET_LADDER]
    small = budget_choices(60, 50_000, CPU, 32, 10, training_gflops=60.0)  # a minute for 50,000 images
    large = budget_choices(100 * 3600, 50_000, CPU, 32, 10, training_gflops=60.0)
    assert small["model"] == ladder[0]
    assert large["model"] == ladder[-1]
    fewer_images = budget_choices(600, 500, CPU, 32, 10, training_gflops=60.0)
    assert ladder.index(fewer_images["model"]) >= ladder.index(small["model"])
    for choices in (small, large):
        assert choices["warmup_epochs"] > 0 and choices["batch_size"] >= 16
        # What the choice rests on, for the run's record: the rate and each rung's estimated passes.
        estimate = choices["estimate"]
        assert estimate["training_gflops"] == 60.0 and set(estimate["estimated_passes"]) == set(ladder)
        taken = [m for m in ladder if estimate["estimated_passes"][m] >= estimate["min_passes"][m]]
        assert choices["model"] == taken[-1]  # the largest rung whose estimate reaches its minimum


def test_photos_take_the_full_width_only_with_more_passes_than_cifar() -> None:
    # The pets run of issue #33: 5,000 photos at 160 px, 10 minutes, 109 GFLOP/s measured. The full width
    # would get about 7.5 estimated passes: enough at 32 px (CIFAR-10's threshold), not on photos.
    ten_minutes = budget_choices(600, 5_000, CPU, 160, 2, training_gflops=109.0)
    full_passes = ten_minutes["estimate"]["estimated_passes"]["hybrid-airbench"]
    assert FULL_WIDTH_MIN_PASSES <= full_passes < FULL_WIDTH_MIN_PASSES_PHOTOS
    assert ten_minutes["model"] == "hybrid-airbench-half"
    assert ten_minutes["estimate"]["min_passes"]["hybrid-airbench"] == FULL_WIDTH_MIN_PASSES_PHOTOS
    assert budget_choices(1800, 5_000, CPU, 160, 2, training_gflops=109.0)["model"] == "hybrid-airbench"
    thumbnails = budget_choices(600, 5_000, CPU, 32, 2, training_gflops=109.0 / 25)  # as many passes
    assert thumbnails["estimate"]["min_passes"]["hybrid-airbench"] == FULL_WIDTH_MIN_PASSES

@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_a_budgeted_run_records_the_resolved_recipe(
    class_folder: Path, tiny_train_options: dict, capsys: pytest.CaptureFixture
) -> None:
    options = {k: v for k, v in tiny_train_options.items() if k not in ("model", "batch_size")}
    run = train(data=str(class_folder), quiet=False, **{**options, "time_budget": 5.0}).run_dir
    record = json.loads((run / "config.json").read_text())
    recorded = record["train"]
    assert recorded["model"]["preset"] in [rung.model for rung in BUDGET_LADDER]
    estimate = record["budget_estimate"]  # why the ladder chose it, also said on the start line
    assert estimate["training_gflops"] > 0
    passes = estimate["estimated_passes"][recorded["model"]["preset"]]
    assert f"about {passes:.1f} passes over the data in the budget" in capsys.readouterr().err
    optim = recorded["optim"]
    assert None not in (optim["batch_size"], optim["lr"], optim["ema_decay"], optim["warmup_epochs"])


def test_a_short_budget_trains_large_images_at_a_lower_resolution() -> None:
    """Halved (to a multiple of 8) until the cheapest model gets enough passes and a bounded token count
    at it; never below 32 px, never above the data's own size, and a model with few tokens that the
    budget affords keeps the native size."""
    slow = {"training_gflops": 10.0}
    ten_minutes = budget_img_size(600, 9_469, 224, 10, **slow)  # the photographs of issue #12, a slow CPU
    assert 32 <= ten_minutes < 224 and ten_minutes % 8 == 0
    assert budget_img_size(600, 9_469_000, 224, 10, **slow) == 32  # a thousand times the images
    assert budget_img_size(600, 9_469, 24, 10, **slow) == 24  # small images are never enlarged
    fast = {"training_gflops": 1e6}
    assert budget_img_size(600, 9_469, 224, 10, **fast) == 224  # the ladder's hybrids: 3x3 tokens at 224 px
    nano = budget_img_size(600, 9_469, 224, 10, **fast, model="foveal-nano")  # 56x56 tokens at 224 px
    assert nano == 112 and tokens_per_image("foveal-nano", nano) <= MAX_BUDGET_TOKENS
    assert budget_img_size(600, 9_469, 224, 10, **fast, model="hybrid-nano") == 224  # 7x7 tokens at any size


def test_the_measured_activations_grow_with_the_image() -> None:
    nano = create_model(BUDGET_LADDER[0].model, num_classes=10, img_size=64)
    small, large = activation_bytes_per_image(nano, 32), activation_bytes_per_image(nano, 64)
    assert 0 < small and large > 3.5 * small  # 4x the pixels and tokens, 16x the attention


def test_a_budget_batch_fits_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("foveal.training.footprint.free_memory", lambda device: 1 << 40)
    roomy = budget_choices(600, 50_000, CPU, 32, 10, training_gflops=50.0)
    model = create_model(roomy["model"], img_size=96)
    per_image = BACKWARD_FACTOR * activation_bytes_per_image(model, 96)
    fixed = OPTIMIZER_COPIES * sum(p.numel() * p.element_size() for p in model.parameters())
    free = (fixed + 20 * per_image) / STEP_MEMORY_SHARE  # room for the weights and 20 images at 96 px
    monkeypatch.setattr("foveal.training.footprint.free_memory", lambda device: free)
    tight = budget_choices(600, 50_000, CPU, 96, 10, training_gflops=50.0, model=roomy["model"])
    assert roomy["batch_size"] == 256 and tight["batch_size"] == 16
    assert tight["lr"] == pytest.approx(roomy["lr"] * 16 / 256)  # the linear scaling rule
