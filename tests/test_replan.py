"""Re-planning a time budget (training/replan.py) on a FakeClock (training/clock.py): exact plans from
small made-up runs, no training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from foveal.config import make_train_config
from foveal.predictor.rejection import FIT_IMAGES
from foveal.training.budget import FINAL_EVALUATION_MARGIN, FINISH_SECONDS, BudgetClock
from foveal.training.clock import FakeClock, SystemClock
from foveal.training.replan import (
    EndViews,
    budget_clock,
    budget_ends_epoch,
    budget_ends_run,
    end_views,
    plan_spent,
)
from foveal.training.schedule import StepPlan
from foveal.training.state import Progress


def test_a_fake_clock_moves_only_when_told_and_never_back() -> None:
    clock = FakeClock(start=10.0)
    assert clock.now() == clock.now() == 10.0
    clock.advance(0.25)
    assert clock.now() == 10.25
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1.0)
    system = SystemClock()
    assert system.now() <= system.now()


def test_the_end_is_counted_in_forward_passes() -> None:
    config = make_train_config(data="digits", time_budget=60.0)  # validates on up to 2,000 images, one view
    assert end_views(config, val_images=3, train_images=33, model_views=6) == EndViews(3, 3 * 6 + 33)
    many = end_views(config, val_images=10_000, train_images=10**6, model_views=1)
    assert many == EndViews(2000, 10_000 + FIT_IMAGES)  # a sample validates; the open-set fit is capped


def test_the_budget_clock_scales_the_final_evaluation_from_a_validation() -> None:
    clock = budget_clock(
        60.0, elapsed=7.0, step_seconds=3.0, steps_timed=20, validation=0.5, views=EndViews(4, 40)
    )
    assert clock == BudgetClock(60.0, 7.0, 0.15, 0.5, 5.0)
    assert budget_clock(60.0, 0.0, 0.0, 0, 0.0, EndViews(4, 40)).step_seconds == 0.0  # nothing timed yet


def test_a_plan_is_spent_once_its_steps_are_taken() -> None:
    assert not plan_spent(Progress(global_step=50))  # no plan yet
    assert not plan_spent(Progress(global_step=9, planned_steps=10))
    assert plan_spent(Progress(global_step=10, planned_steps=10))


def made_up_run(
    tmp_path: Path, budget: float = 24.0, report: bool = False, val_images: int = 3
) -> SimpleNamespace:
    """What replan reads of a run: 33 training images in batches of 2 (17 steps an epoch),
    `val_images` validation images seen in one view, the events log in `tmp_path`; no report unless
    `report` (its reserve: test_report_plan.py)."""
    config = make_train_config(
        data="digits", time_budget=budget, batch_size=2, warmup_epochs=1.0, report=report
    )
    data = SimpleNamespace(train=[None] * 33, val=[None] * val_images)
    info = SimpleNamespace(preprocessing=SimpleNamespace(view_count=1))
    return SimpleNamespace(config=config, data=data, info=info, run_dir=tmp_path, steps_per_epoch=17)


def made_up_trainer(clock: FakeClock, steps: int, step_seconds: float, **progress: int) -> SimpleNamespace:
    """A trainer `steps` steps of `step_seconds` in, on `clock` (moved by them), no validation timed
    and its estimate measured at nothing."""
    clock.advance(steps * step_seconds)
    return SimpleNamespace(
        progress=Progress(global_step=steps, step=steps, **progress),
        plan=StepPlan(1000, 17),
        clock=clock,
        started=0.0,
        step_seconds=steps * step_seconds,
        steps_timed=steps,
        validation_seconds=0.0,
        evaluation_seconds_per_view=0.0,
        resumed=False,
    )


def test_no_plan_before_calibration_ends(tmp_path: Path) -> None:
    trainer = made_up_trainer(FakeClock(), steps=4, step_seconds=0.15)  # 0.6 s < 3% of 24 s
    assert not budget_ends_epoch(made_up_run(tmp_path), trainer, 0.15)
    assert trainer.progress.planned_steps == 0 and trainer.plan.total_steps == 1000


def test_the_first_plan_comes_once_calibrated_and_lays_out_the_schedule(tmp_path: Path) -> None:
    trainer = made_up_trainer(FakeClock(), steps=5, step_seconds=0.15)  # 0.75 s >= 3% of 24 s
    assert not budget_ends_epoch(made_up_run(tmp_path), trainer, 0.15)
    # 5 + floor((24 - 0.75 - FINISH_SECONDS - 0.15) / 0.15): the validation not yet timed costs nothing
    assert FINISH_SECONDS == 5.0 and trainer.progress.planned_steps == 125
    assert (trainer.plan.total_steps, trainer.plan.warmup_steps) == (125, 17)  # one epoch's warmup
    short = made_up_trainer(FakeClock(), steps=5, step_seconds=0.15)
    budget_ends_epoch(made_up_run(tmp_path, budget=8.0), short, 0.15)
    assert short.plan.warmup_steps == short.progress.planned_steps // 5 == 3  # a fifth of a short plan


def test_an_epoch_end_replans_with_the_validation_measured(tmp_path: Path) -> None:
    clock = FakeClock()
    trainer = made_up_trainer(clock, steps=17, step_seconds=0.15, planned_steps=125)
    clock.advance(0.1)
    trainer.validation_seconds = 0.1
    assert not budget_ends_run(made_up_run(tmp_path), trainer)
    final = 0.1 * (3 + 33) / 3  # the final evaluation's forward passes over a validation's
    reserve = 0.1 + final * FINAL_EVALUATION_MARGIN + FINISH_SECONDS
    assert (
        trainer.progress.planned_steps == 17 + int((24 - 2.65 - reserve - 0.15) // (0.15 + 0.1 / 17)) == 111
    )


def test_a_spent_plan_ends_the_run_and_a_resumed_one_is_kept(tmp_path: Path) -> None:
    spent = made_up_trainer(FakeClock(), steps=40, step_seconds=0.15, planned_steps=40)
    assert budget_ends_run(made_up_run(tmp_path), spent) and budget_ends_epoch(
        made_up_run(tmp_path), spent, 0.15
    )
    resumed = made_up_trainer(FakeClock(), steps=17, step_seconds=0.15, planned_steps=30)
    resumed.resumed = True
    resumed.clock.advance(100.0)  # long past the deadline, but the plan it had holds
    assert not budget_ends_run(made_up_run(tmp_path), resumed)
    assert not budget_ends_epoch(made_up_run(tmp_path), resumed, 0.15)
    assert resumed.progress.planned_steps == 30


def test_the_deadline_ends_an_epoch_when_one_more_step_would_overrun(tmp_path: Path) -> None:
    run = made_up_run(tmp_path, budget=10.0)
    trainer = made_up_trainer(FakeClock(), steps=65, step_seconds=0.05, planned_steps=98)
    trainer.clock.advance(4.75 - 65 * 0.05)  # 4.75 s in: the last steps slowed to 0.35 s
    assert not budget_ends_epoch(run, trainer, 0.2)  # 4.75 + 0.2 + 5 < 10
    assert budget_ends_epoch(run, trainer, 0.35)  # 4.75 + 0.35 + 5 >= 10
    assert trainer.progress.planned_steps == 65  # the plan ends here
    assert "stopped at step 65 of 98 to keep the deadline" in (tmp_path / "events.log").read_text()
