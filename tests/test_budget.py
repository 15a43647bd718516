"""Training for a time budget: the plan fits the deadline and the run ends annealed, on time."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foveal.config import parse_duration
from foveal.errors import ConfigError
from foveal.training import loop, train
from foveal.training.budget import (
    CALIBRATION_STEPS,
    FINAL_EVALUATION_MARGIN,
    FINISH_SECONDS,
    BudgetClock,
    calibrated,
    past_deadline,
    plan_total_steps,
)
from foveal.training.state import list_checkpoints, load_checkpoint


def test_durations_parse_and_bad_ones_are_refused() -> None:
    assert [parse_duration(t) for t in ("90s", "10m", "1.5h", "45")] == [90, 600, 5400, 45]
    for bad in ("ten minutes", "-3m", "0", ""):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad)


def test_the_plan_spends_the_budget_on_steps_and_validations() -> None:
    clock = BudgetClock(budget=600, elapsed=60, step_seconds=0.5, validation_seconds=10, final_seconds=40)
    total = plan_total_steps(clock, steps_done=20, steps_per_epoch=100)
    validations = math.ceil(total / 100)  # one per epoch, the last partial one included
    final = 40 * FINAL_EVALUATION_MARGIN + FINISH_SECONDS  # the final evaluation, with its margin
    used = 60 + (total - 20) * 0.5 + validations * 10 + final
    assert 600 - 12 < used <= 600  # inside the budget, with little left over
    late = BudgetClock(budget=600, elapsed=700, step_seconds=0.5, validation_seconds=10, final_seconds=40)
    assert plan_total_steps(late, steps_done=20, steps_per_epoch=100) == 21  # at least one more step


def test_calibration_ends_after_its_steps_or_its_share_of_the_budget() -> None:
    assert not calibrated(CALIBRATION_STEPS - 1, 1.0, budget=600)
    assert calibrated(CALIBRATION_STEPS, 1.0, budget=600)
    assert calibrated(1, 60.0, budget=600)  # one step of a minute: plan now
    assert not calibrated(0, 60.0, budget=600)  # but never before a step is timed


def test_the_deadline_keeps_the_next_step_and_the_end_inside_the_budget() -> None:
    clock = BudgetClock(budget=600, elapsed=500, step_seconds=1.0, validation_seconds=10, final_seconds=40)
    reserve = 10 + 40 * FINAL_EVALUATION_MARGIN + FINISH_SECONDS
    assert not past_deadline(clock, next_step_seconds=600 - 500 - reserve - 1)
    assert past_deadline(clock, next_step_seconds=600 - 500 - reserve)


class StepClock:
    """A run's clock on which every training step takes `step_seconds` more than it really does, so
    that a budget of seconds is spent in a fraction of them and no test sleeps; `slow_after` steps,
    each step costs `slowdown` more (another process took the cores). With `real=False` only the
    steps take time: the loop's reaction to them is then tested free of the machine's load."""

    def __init__(
        self, step_seconds: float, slow_after: int | None = None, slowdown: float = 0.0, real: bool = True
    ) -> None:
        self.step_seconds, self.slow_after, self.slowdown, self.real = (
            step_seconds,
            slow_after,
            slowdown,
            real,
        )
        self.steps, self.offset = 0, 0.0

    def __call__(self) -> float:
        return (time.perf_counter() if self.real else 0.0) + self.offset

    def step(self) -> None:
        self.steps += 1
        slow = self.slow_after is not None and self.steps > self.slow_after
        self.offset += self.step_seconds + (self.slowdown if slow else 0.0)


def budgeted_run(
    data: Path,
    options: dict,
    budget: float,
    batch_size: int | None,
    clock: StepClock,
    monkeypatch: pytest.MonkeyPatch,
):
    """Train on `data` for `budget` seconds of `clock` (batch_size None: the recipe's); the result and
    the seconds it took by it."""
    import foveal.training.loop as loop

    real_step = loop.train_step

    def timed_step(*args: object, **kwargs: object):
        clock.step()
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", timed_step)
    started = clock()
    result = train(
        data=str(data),
        quiet=True,
        time_budget=budget,
        started=started,
        clock=clock,
        **{**options, "batch_size": batch_size, "epochs": 1},  # (None leaves it to the recipe)
    )
    return result, clock() - started


def stopped_under_final_plan(full: Path, resumed: Path) -> Path:
    """A copy of the finished budgeted run `full` as if stopped at the first checkpoint saved under its
    final plan with steps still to take (mid-epoch, or at the epoch boundary where the last re-plan
    happened; which one exists depends on timing): resuming it must take the same steps.
    best.safetensors is kept (its epoch may precede the checkpoint); last is rewritten on resume."""
    states = [(p, load_checkpoint(p)["progress"]) for p in list_checkpoints(full / "checkpoints")]
    final_plan = states[-1][1]["planned_steps"]
    # After the plan's last change: a plan can come back to an earlier count (40, 41, 40), and a
    # checkpoint from the first 40 would resume without the steps the full run took under 41.
    changes = [
        i for i in range(1, len(states)) if states[i][1]["planned_steps"] != states[i - 1][1]["planned_steps"]
    ]
    settled = states[changes[-1] if changes else 0 :]
    middle = next(p for p, s in settled if s["planned_steps"] == final_plan and not s["finished"])
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns("state-*.pt", "metrics.json"))
    shutil.copy2(middle, resumed / "checkpoints" / middle.name)
    return resumed


def test_a_budgeted_run_ends_on_time_and_annealed(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first run in a fresh process pays about a second once for imports and kernels in its first
    # validation, which the plan then reserves for every later one: a 12 s budget ends early. Warmed
    # here, as this test is about the plan (the cold start is noted in the #12 closing note).
    train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 1})
    budget = 12.0
    clock = StepClock(step_seconds=0.15)
    result, elapsed = budgeted_run(class_folder, tiny_train_options, budget, 2, clock, monkeypatch)
    assert budget * 0.6 < elapsed < budget + 3.0
    rows = (result.run_dir / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == result.epochs > 1  # `epochs` is replaced by the budget
    final_lr, peak = float(rows[-1].split(",")[6]), 1e-3
    assert final_lr < 0.05 * peak  # the cosine schedule reached its end
    # Named for what it is: the last, annealed epoch, with its figure on every held-out image.
    assert result.best_epoch == result.epochs
    assert result.kept_model.startswith(f"final model (epoch {result.epochs}, annealed): val top-1 ")


def test_a_budgeted_run_resumes_with_its_plan(
    class_folder: Path, tiny_train_options: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {**tiny_train_options, "checkpoint_every_steps": 1, "keep_checkpoints": 1000}
    full = budgeted_run(class_folder, options, 10.0, 2, StepClock(step_seconds=0.15), monkeypatch)[0].run_dir
    resumed = stopped_under_final_plan(full, tmp_path / "resumed")
    train(resume=resumed, quiet=True)
    expected, got = (
        load_file(str(full / "weights/last.safetensors")),
        load_file(str(resumed / "weights/last.safetensors")),
    )
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_steps_that_slow_down_after_the_plan_still_end_on_time(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is refined only at epoch ends; steps that turn 10x slower mid-run (another process
    takes the cores) must not push the end past the deadline."""
    budget = 10.0
    clock = StepClock(step_seconds=0.05, slow_after=60, slowdown=0.3, real=False)
    result, elapsed = budgeted_run(class_folder, tiny_train_options, budget, 1, clock, monkeypatch)
    assert elapsed < budget + 1.0, elapsed
    assert "deadline" in (result.run_dir / "events.log").read_text()


@pytest.mark.parametrize("budget", [None, 6.0], ids=["epochs", "time-budget"])
def test_a_budget_validates_in_one_view_and_evaluates_in_the_models(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch, budget: float | None
) -> None:
    """Under --time the last epoch is kept whatever its validation says, so each epoch validates in one
    view and the final evaluation alone pays for the model's six; without a budget the validations
    choose the best epoch, so they see what the model will."""
    views: list[str] = []
    evaluate = loop.evaluate

    def recorded(model, images, preprocessing, **options):
        views.append(preprocessing.test_time_views)
        return evaluate(model, images, preprocessing, **options)

    monkeypatch.setattr("foveal.training.loop.evaluate", recorded)
    options = {**tiny_train_options, "tta_shift": True, "time_budget": budget}
    result = train(data=str(class_folder), quiet=True, **options)
    *epochs, final = views
    assert len(epochs) == result.epochs and final == "flip-shift"
    assert set(epochs) == {"none" if budget else "flip-shift"}
    assert result.best_top1 == result.metrics.top1  # the kept model on every held-out image
