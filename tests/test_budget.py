"""Training for a time budget: the plan fits the deadline and the run ends annealed, on time."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foveal.errors import ConfigError
from foveal.training import train
from foveal.training.budget import FINISH_SECONDS, BudgetClock, plan_total_steps
from foveal.training.config import parse_duration
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
    used = 60 + (total - 20) * 0.5 + validations * 10 + 40 + FINISH_SECONDS  # + the final evaluation
    assert 600 - 12 < used <= 600  # inside the budget, with little left over
    late = BudgetClock(budget=600, elapsed=700, step_seconds=0.5, validation_seconds=10, final_seconds=40)
    assert plan_total_steps(late, steps_done=20, steps_per_epoch=100) == 21  # at least one more step


def budgeted_run(data: Path, options: dict, budget: float, batch_size: int):
    """Train on `data` for `budget` seconds; the result and the seconds it took from the start."""
    started = time.perf_counter()
    result = train(
        data=str(data),
        quiet=True,
        time_budget=budget,
        started=started,
        **{**options, "batch_size": batch_size, "epochs": 1},
    )
    return result, time.perf_counter() - started


def test_a_budgeted_run_ends_on_time_and_annealed(class_folder: Path, tiny_train_options: dict) -> None:
    budget = 12.0
    result, elapsed = budgeted_run(class_folder, tiny_train_options, budget, batch_size=2)
    assert budget * 0.6 < elapsed < budget + 3.0
    rows = (result.run_dir / "results.csv").read_text().splitlines()
    assert len(rows) - 1 == result.epochs > 1  # `epochs` is replaced by the budget
    final_lr, peak = float(rows[-1].split(",")[6]), 1e-3
    assert final_lr < 0.05 * peak  # the cosine schedule reached its end


def test_a_budgeted_run_resumes_with_its_plan(
    class_folder: Path, tiny_train_options: dict, tmp_path: Path
) -> None:
    options = {**tiny_train_options, "batch_size": 2, "checkpoint_every_steps": 1, "keep_checkpoints": 1000}
    full = train(data=str(class_folder), quiet=True, time_budget=10.0, **options).run_dir
    states = [(p, load_checkpoint(p)["progress"]) for p in list_checkpoints(full / "checkpoints")]
    final_plan = states[-1][1]["planned_steps"]
    # The first checkpoint saved under the final plan, with steps still to take (mid-epoch, or at
    # the epoch boundary where the last re-plan happened; which one exists depends on timing):
    # resuming it must take the same steps.
    middle = next(p for p, s in states if s["planned_steps"] == final_plan and not s["finished"])
    resumed = tmp_path / "resumed"
    # best.safetensors is kept (its epoch may precede the checkpoint); last is rewritten.
    shutil.copytree(full, resumed, ignore=shutil.ignore_patterns("state-*.pt", "metrics.json"))
    shutil.copy2(middle, resumed / "checkpoints" / middle.name)
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
    import foveal.training.loop as loop

    real_step, calls = loop.train_step, []

    def slowing_step(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) > 60:
            time.sleep(0.3)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", slowing_step)
    budget = 10.0
    result, elapsed = budgeted_run(class_folder, tiny_train_options, budget, batch_size=1)
    assert elapsed < budget + 1.0, elapsed
    assert "deadline" in (result.run_dir / "events.log").read_text()
