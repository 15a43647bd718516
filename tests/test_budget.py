"""Training for a time budget: the plan fits the deadline and the run ends annealed, on time."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foveal.config import parse_duration
from foveal.errors import ConfigError
from foveal.training import final, loop, train, validation
from foveal.training.budget import (
    CALIBRATION_STEPS,
    FINAL_EVALUATION_MARGIN,
    FINISH_SECONDS,
    BudgetClock,
    calibrated,
    past_deadline,
    plan_total_steps,
)
from foveal.training.clock import FakeClock
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


class StepCosts:
    """What a budgeted run's steps and validations cost on its FakeClock, which moves by these alone:
    each training step `step_seconds` (`slowdown` more after `slow_after` steps: another process took
    the cores), each per-epoch validation `validation_seconds`. The plan is then exact, whatever the
    machine does meanwhile; nothing sleeps."""

    def __init__(
        self,
        step_seconds: float,
        validation_seconds: float = 0.0,
        slow_after: int | None = None,
        slowdown: float = 0.0,
    ) -> None:
        self.step_seconds, self.validation_seconds = step_seconds, validation_seconds
        self.slow_after, self.slowdown = slow_after, slowdown
        self.clock, self.steps = FakeClock(), 0

    def step(self) -> None:
        self.steps += 1
        slow = self.slow_after is not None and self.steps > self.slow_after
        self.clock.advance(self.step_seconds + (self.slowdown if slow else 0.0))


def charged(costs: StepCosts, monkeypatch: pytest.MonkeyPatch) -> None:
    """Charge `costs` to their clock for every training step and per-epoch validation of a run."""
    real_step, real_validate = loop.train_step, validation.validate

    def timed_step(*args: object, **kwargs: object):
        costs.step()
        return real_step(*args, **kwargs)

    def timed_validate(*args: object, **kwargs: object):
        costs.clock.advance(costs.validation_seconds)
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", timed_step)
    monkeypatch.setattr(validation, "validate", timed_validate)


def budgeted_run(
    data: Path,
    options: dict,
    budget: float,
    batch_size: int | None,
    costs: StepCosts,
    monkeypatch: pytest.MonkeyPatch,
):
    """Train on `data` for `budget` seconds of `costs`' clock (batch_size None: the recipe's); the
    result and the seconds it took by that clock."""
    charged(costs, monkeypatch)
    started = costs.clock.now()
    result = train(
        data=str(data),
        quiet=True,
        time_budget=budget,
        started=started,
        clock=costs.clock,
        **{**options, "batch_size": batch_size, "epochs": 1},  # (None leaves it to the recipe)
    )
    return result, costs.clock.now() - started


def plan_changes(run: Path) -> list[tuple[int, int]]:
    """(global step, planned steps) at each checkpoint of `run` whose plan differs from the one before."""
    states = [load_checkpoint(p)["progress"] for p in list_checkpoints(run / "checkpoints")]
    plans = [(state["global_step"], state["planned_steps"]) for state in states]
    return [now for before, now in zip([(0, 0), *plans], plans, strict=False) if now[1] != before[1]]


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


CHECKPOINTED = {"checkpoint_every_steps": 1, "keep_checkpoints": 1000}  # every plan on record


def test_a_budgeted_run_ends_on_time_and_annealed(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """33 training images in batches of 2 (17 steps an epoch), 3 validation images in one view."""
    costs = StepCosts(step_seconds=0.15, validation_seconds=0.1)
    result, elapsed = budgeted_run(
        class_folder, {**tiny_train_options, **CHECKPOINTED}, 24.0, 2, costs, monkeypatch
    )
    # Calibrated after 5 steps (0.75 s >= 3% of 24 s); validation not yet timed (the fake clock does
    # not move for the one-batch estimate): 5 + floor((24 - 0.75 - 5 - 0.15) / 0.15) = 125 steps.
    # Re-planned after epoch 1 (17 steps and a validation: 2.65 s), the final evaluation estimated at
    # 0.1 s x (3 + 33) / 3 forward passes = 1.2 s: 17 + floor((24 - 2.65 - (0.1 + 1.2 x 1.15 + 5) - 0.15)
    # / (0.15 + 0.1 / 17)) = 111, which every later epoch's plan confirms.
    assert plan_changes(result.run_dir) == [(5, 125), (17, 111)]
    assert costs.steps == 111 and result.epochs == 7  # 6 epochs of 17 steps, the 7th cut to 9
    assert elapsed == pytest.approx(111 * 0.15 + 7 * 0.1)  # 17.35 s: the rest is the end's reserve
    rows = (result.run_dir / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == result.epochs  # `epochs` is replaced by the budget
    final_lr, peak = float(rows[-1].split(",")[6]), 1e-3
    assert final_lr < 0.05 * peak  # the cosine schedule reached its end
    # Named for what it is: the last, annealed epoch, with its figure on every held-out image.
    assert result.best_epoch == result.epochs
    assert result.kept_model.startswith(f"final model (epoch {result.epochs}, annealed): val top-1 ")


def test_a_budgeted_run_resumes_with_its_plan(
    class_folder: Path, tiny_train_options: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {**tiny_train_options, **CHECKPOINTED}
    costs = StepCosts(step_seconds=0.15, validation_seconds=0.1)
    full = budgeted_run(class_folder, options, 10.0, 2, costs, monkeypatch)[0].run_dir
    assert plan_changes(full) == [(2, 32), (17, 21)]  # the final plan made at epoch 1's end
    resumed = stopped_under_final_plan(full, tmp_path / "resumed")
    train(resume=resumed, quiet=True, clock=costs.clock)  # its steps charged as the full run's
    expected, got = (
        load_file(str(full / "weights/last.safetensors")),
        load_file(str(resumed / "weights/last.safetensors")),
    )
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_steps_that_slow_down_after_the_plan_still_end_on_time(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is refined only at epoch ends; steps that turn 7x slower mid-run (another process
    takes the cores) must not push the end past the deadline."""
    costs = StepCosts(step_seconds=0.05, slow_after=60, slowdown=0.3)
    result, elapsed = budgeted_run(class_folder, tiny_train_options, 10.0, 1, costs, monkeypatch)
    # Planned for 98 steps of 0.05 s; after 60 of them and 5 of 0.35 s (4.75 s), a sixth would leave
    # less than the end's 5 s reserve: 4.75 + 0.35 + 5 >= 10.
    assert costs.steps == 65 and elapsed == pytest.approx(4.75)
    events = (result.run_dir / "events.log").read_text()
    assert "stopped at step 65 of 98 to keep the deadline" in events


@pytest.mark.parametrize("budget", [None, 6.0], ids=["epochs", "time-budget"])
def test_a_budget_validates_in_one_view_and_evaluates_in_the_models(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch, budget: float | None
) -> None:
    """Under --time the last epoch is kept whatever its validation says, so each epoch validates in one
    view and the final evaluation alone pays for the model's six; without a budget the validations
    choose the best epoch, so they see what the model will."""
    views: list[str] = []
    evaluate = validation.evaluate

    def recorded(model, images, preprocessing, **options):
        views.append(preprocessing.test_time_views)
        return evaluate(model, images, preprocessing, **options)

    monkeypatch.setattr(validation, "evaluate", recorded)  # each epoch's validation
    monkeypatch.setattr(final, "evaluate", recorded)  # the final evaluation
    options = {**tiny_train_options, "tta_shift": True, "time_budget": budget}
    result = train(data=str(class_folder), quiet=True, **options)
    *epochs, last = views
    assert len(epochs) == result.epochs and last == "flip-shift"
    assert set(epochs) == {"none" if budget else "flip-shift"}
    assert result.best_top1 == result.metrics.top1  # the kept model on every held-out image
