"""The budget's speed probe (training/speed.py): real training steps, timed, bounded, and followed by
the ladder's choice."""

from __future__ import annotations

import math
import time

import pytest
import torch

from foveal.training import speed
from foveal.training.clock import FakeClock
from foveal.training.distributed import World
from foveal.training.recipe import BUDGET_LADDER, budget_choices, planning_gflops

CPU = torch.device("cpu")
PROBED = BUDGET_LADDER[0].model


def test_the_probe_times_real_training_steps_and_keeps_to_its_time() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    measured = speed.measure_training_speed(PROBED, 32, 10, CPU, "fp32", batch=8, seconds=0.3)
    elapsed = time.perf_counter() - started
    assert measured.steps >= speed.PROBE_MIN_STEPS and measured.batch == 8 and measured.img_size == 32
    assert 0 < measured.images_per_second < 1e5
    step = measured.batch / measured.images_per_second
    # 0.3 s of timed steps, plus the warm-up (and model building), plus at most one step past it
    assert elapsed < 0.3 + 4 * step + 5.0, elapsed


def test_a_slower_step_is_measured_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate is the steps' own, their median: on a clock that each real step moves by a set cost,
    steps of 0.01 s read batch / 0.01 and steps of 0.11 s batch / 0.11, whatever the machine does."""
    real_step = speed.train_step

    def measure(cost: float) -> float:
        clock = FakeClock()

        def step_costing(*args, **kwargs):
            clock.advance(cost)
            return real_step(*args, **kwargs)

        monkeypatch.setattr("foveal.training.speed.train_step", step_costing)
        measured = speed.measure_training_speed(
            PROBED, 32, 10, CPU, "fp32", batch=8, seconds=0.2, clock=clock
        )
        assert measured.steps == max(speed.PROBE_MIN_STEPS, min(speed.PROBE_MAX_STEPS, math.ceil(0.2 / cost)))
        return measured.images_per_second

    assert measure(0.01) == pytest.approx(800) and measure(0.11) == pytest.approx(8 / 0.11)


def probe_at(images_per_second: float):
    """A stand-in for the probe that reads `images_per_second` (the recipe's arithmetic alone)."""

    def measure(model_name, img_size, num_classes, device, precision="auto", **_):
        return speed.StepSpeed(model_name, img_size, 64, 3, images_per_second)

    return measure


def test_the_ladder_follows_the_measured_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same budget and data: the machine the probe finds 100x faster gets 100x the estimated passes,
    and a larger model where that crosses a rung's minimum."""
    monkeypatch.setattr("foveal.training.speed.measure_training_speed", probe_at(200.0))
    slow = budget_choices(600, 50_000, CPU, 32, 10, training_gflops=planning_gflops(600, CPU, "fp32"))
    monkeypatch.setattr("foveal.training.speed.measure_training_speed", probe_at(20_000.0))
    fast = budget_choices(600, 50_000, CPU, 32, 10, training_gflops=planning_gflops(600, CPU, "fp32"))
    for name, passes in slow["estimate"]["estimated_passes"].items():
        assert fast["estimate"]["estimated_passes"][name] == pytest.approx(100 * passes, rel=0.02)
    assert slow["model"] == BUDGET_LADDER[0].model and fast["model"] == BUDGET_LADDER[-1].model


def test_under_torchrun_the_ranks_train_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rank probes its own share of the machines and trains its share of every batch."""
    monkeypatch.setattr("foveal.training.speed.measure_training_speed", probe_at(500.0))
    alone = planning_gflops(600, CPU, "fp32")
    monkeypatch.setattr("foveal.training.distributed.world", lambda: World(rank=0, local_rank=0, size=2))
    assert planning_gflops(600, CPU, "fp32") == pytest.approx(2 * alone)
