"""The default recipe: the settings a user leaves unset, chosen for the data and the time budget.

With `--epochs` the defaults are fixed (EPOCH_DEFAULTS, what `foveal train digits` is measured
with). With `--time`, what can be learnt depends on how many passes over the data the budget buys,
so the recipe estimates it (the budget, this device's measured matmul speed, the data set's size
and each model's FLOPs) and takes the largest model of BUDGET_LADDER that still gets enough
passes. Each choice is measured in docs/benchmarks.md ("Recipe ablation").

Only options left as None are filled in, and the resolved config is what the run folder records,
so a resumed run never re-decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from foveal import runtime
from foveal.config import TrainConfig
from foveal.models import create_model
from foveal.models.flops import forward_flops

EPOCH_DEFAULTS: dict[str, Any] = {
    "model": "foveal-small",
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_epochs": 3.0,
    "ema_decay": 0.0,
}


@dataclass(frozen=True)
class Rung:
    """One model of the budget ladder and the settings that go with it."""

    model: str
    min_epochs: float  # taken when the budget buys at least this many passes over the data
    lr: float
    batch_size: int


# Smallest to largest. min_epochs comes from time-to-accuracy runs on CIFAR-10 (docs/benchmarks.md):
# below it, a smaller model that sees the data more often ends higher.
BUDGET_LADDER: tuple[Rung, ...] = (
    Rung("foveal-nano", 0.0, 4e-3, 256),
    Rung("foveal-micro", 6.0, 4e-3, 256),
    Rung("foveal-mini", 10.0, 4e-3, 256),
)
MATMUL_EFFICIENCY = 0.5  # share of the measured matmul rate a training step reaches (measured: 0.45-0.6)
BUDGET_WARMUP_EPOCHS = 0.3  # warmup under a budget (and at most a fifth of the steps, see loop._apply_plan)
STEPS_PER_EPOCH_MIN = 20  # small data sets get a smaller batch, so that an epoch has this many steps


def resolve_recipe(
    config: TrainConfig, train_images: int, device: torch.device, img_size: int, num_classes: int
) -> TrainConfig:
    """`config` with every option left as None set: by the budget ladder under a time budget, else to
    EPOCH_DEFAULTS. Options the user set are kept as they are."""
    if config.optim.time_budget:
        choices = budget_choices(config.optim.time_budget, train_images, device, img_size, num_classes)
    else:
        choices = EPOCH_DEFAULTS
    given = config.flat()
    return config.replace(**{k: v for k, v in choices.items() if given[k] is None})


def budget_choices(
    budget_seconds: float, train_images: int, device: torch.device, img_size: int, num_classes: int
) -> dict[str, Any]:
    """Model, batch size, learning rate, warmup and EMA for a `budget_seconds` run on this device.

    The weight EMA is off: within budgets of a few epochs the cosine decay to 1% of the peak already
    settles the weights, and the EMA measured no better (docs/benchmarks.md).
    """
    affordable = (
        budget_seconds * runtime.matmul_gflops(device, size=1024) * MATMUL_EFFICIENCY / train_images
    )  # GFLOP/image
    rung = BUDGET_LADDER[0]
    for candidate in BUDGET_LADDER[1:]:
        if (
            affordable / train_gflops_per_image(candidate.model, img_size, num_classes)
            >= candidate.min_epochs
        ):
            rung = candidate
    batch_size = rung.batch_size
    while batch_size > 16 and train_images / batch_size < STEPS_PER_EPOCH_MIN:
        batch_size //= 2
    return {
        "model": rung.model,
        "batch_size": batch_size,
        "lr": rung.lr * batch_size / rung.batch_size,  # the linear scaling rule (Goyal et al. 2017)
        "warmup_epochs": BUDGET_WARMUP_EPOCHS,
        "ema_decay": 0.0,
    }


def train_gflops_per_image(model: str, img_size: int, num_classes: int) -> float:
    """GFLOPs of one training image: the forward pass, times 3 for the backward."""
    return 3 * forward_flops(create_model(model, num_classes=num_classes, img_size=img_size), img_size) / 1e9
