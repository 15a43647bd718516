"""The default recipe: fixed with --epochs, chosen from the budget and data with --time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from foveal.config import make_train_config
from foveal.training import train
from foveal.training.recipe import BUDGET_LADDER, EPOCH_DEFAULTS, budget_choices, resolve_recipe

CPU = torch.device("cpu")


def test_epoch_runs_get_the_fixed_defaults_and_keep_what_the_user_set() -> None:
    resolved = resolve_recipe(make_train_config(batch_size=16), 1000, CPU, 32, 10)
    assert resolved.optim.batch_size == 16  # set by the user: kept
    assert resolved.model.preset == EPOCH_DEFAULTS["model"]
    assert resolved.optim.ema_decay == EPOCH_DEFAULTS["ema_decay"]
    assert resolved.optim.warmup_epochs == EPOCH_DEFAULTS["warmup_epochs"]


def test_a_bigger_budget_per_image_buys_a_bigger_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("foveal.runtime.matmul_gflops", lambda device, size=1024: 60.0)
    ladder = [rung.model for rung in BUDGET_LADDER]
    small = budget_choices(60, 50_000, CPU, 32, 10)  # a minute for 50,000 images
    large = budget_choices(100 * 3600, 50_000, CPU, 32, 10)
    assert small["model"] == ladder[0]
    assert large["model"] == ladder[-1]
    assert ladder.index(budget_choices(600, 500, CPU, 32, 10)["model"]) >= ladder.index(small["model"])
    for choices in (small, large):
        assert choices["warmup_epochs"] > 0 and choices["batch_size"] >= 16


def test_a_budgeted_run_records_the_resolved_recipe(class_folder: Path, tiny_train_options: dict) -> None:
    options = {k: v for k, v in tiny_train_options.items() if k not in ("model", "batch_size")}
    run = train(data=str(class_folder), quiet=True, **{**options, "time_budget": 5.0}).run_dir
    recorded = json.loads((run / "config.json").read_text())["train"]
    assert recorded["model"]["preset"] in [rung.model for rung in BUDGET_LADDER]
    optim = recorded["optim"]
    assert None not in (optim["batch_size"], optim["lr"], optim["ema_decay"], optim["warmup_epochs"])
