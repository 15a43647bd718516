"""A budget that holds on any data (issue #12): large images and slow steps still end, saved and
evaluated, inside the budget; the resolution is chosen for the budget and kept on resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli_subprocess
from safetensors.torch import load_file
from synthetic import make_class_folder
from test_budget import StepCosts, budgeted_run, stopped_under_final_plan

from foveal.predictor.saved import load_model
from foveal.training import speed, train
from foveal.training.state import list_checkpoints, load_checkpoint

NATIVE = 224  # px: photographs, where foveal-nano would see 56x56 = 3,136 tokens


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """root/<class>/<image>.png: 3 classes x 12 images of 224x224 px."""
    return make_class_folder(tmp_path / "photos", size=NATIVE)


@pytest.fixture
def options(tmp_path: Path) -> dict:
    """Nothing the budget decides (model, batch, image size) is set."""
    return {"out": str(tmp_path / "runs"), "threads": 1, "report": False}


def slow_device(monkeypatch: pytest.MonkeyPatch, gflops: float = 2.0) -> None:
    """Make the recipe see a device that trains at `gflops` GFLOP/s (a budget buys little)."""
    monkeypatch.setattr("foveal.training.recipe.planning_gflops", lambda *_: gflops)


def trained_size(run: Path) -> int:
    """The image side the run trained at, as its config.json and its saved best model both say."""
    record = json.loads((run / "config.json").read_text())
    _, info = load_model(run / "weights" / "best.safetensors", torch.device("cpu"))
    size = info.preprocessing.img_size
    assert record["train"]["data"]["img_size"] == record["preprocessing"]["img_size"] == size
    return size


def assert_saved_and_evaluated(run: Path) -> None:
    assert (run / "weights" / "best.safetensors").is_file()
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0.0


def test_large_images_with_slow_steps_end_inside_the_budget(
    photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step takes a quarter of the budget: the 20-step calibration alone would take 5 budgets."""
    slow_device(monkeypatch)
    budget = 30.0
    result, elapsed = budgeted_run(photo_folder, options, budget, None, StepCosts(0.25 * budget), monkeypatch)
    assert elapsed <= budget, elapsed
    assert_saved_and_evaluated(result.run_dir)
    assert trained_size(result.run_dir) < NATIVE


def test_the_deadline_holds_before_the_first_plan(
    photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With calibration never ending, only the deadline guard can stop the run in time; the epoch
    it cuts short is still validated, and the model saved and evaluated."""
    monkeypatch.setattr("foveal.training.budget.CALIBRATION_STEPS", 10**6)
    monkeypatch.setattr("foveal.training.budget.CALIBRATION_SHARE", 10.0)
    budget = 20.0
    costs = StepCosts(0.05 * budget)  # 20 steps would take the whole budget
    result, elapsed = budgeted_run(photo_folder, {**options, "img_size": 32}, budget, 1, costs, monkeypatch)
    assert elapsed <= budget, elapsed
    assert_saved_and_evaluated(result.run_dir)
    assert "to keep the deadline" in (result.run_dir / "events.log").read_text()
    assert result.epochs == 1 and result.passes < 1  # the first epoch, cut short, was validated


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_calibration_ends_by_time(photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps of 2% of the budget: the first plan comes after 2 steps (3% of it), not 20."""
    budget = 100.0
    checkpointed = {**options, "img_size": 32, "checkpoint_every_steps": 1, "keep_checkpoints": 1000}
    costs = StepCosts(0.02 * budget)
    run = budgeted_run(photo_folder, checkpointed, budget, 1, costs, monkeypatch)[0].run_dir
    planned = {
        state["global_step"]: state["planned_steps"]
        for state in (load_checkpoint(p)["progress"] for p in list_checkpoints(run / "checkpoints"))
    }
    assert planned[1] == 0 and planned[2] > 2


def test_a_short_budget_lowers_the_resolution_and_says_so(
    photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    slow_device(monkeypatch)
    run = train(data=str(photo_folder), time_budget=3.0, **options).run_dir
    size = trained_size(run)
    assert 32 <= size < NATIVE and size % 8 == 0
    assert f"at {size}px (lowered from {NATIVE}px" in capsys.readouterr().err


def test_the_machine_is_measured_once_a_run(
    photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolution (chosen before decoding) and the model (after) are planned from one measurement
    of this machine's training speed, not one each."""
    probed: list[str] = []
    measure = speed.measure_training_speed

    def counted(*args, **kwargs) -> speed.StepSpeed:
        probed.append(args[0])
        return measure(*args, **kwargs)

    monkeypatch.setattr("foveal.training.speed.measure_training_speed", counted)
    run = train(data=str(photo_folder), time_budget=3.0, **options).run_dir
    assert len(probed) == 1
    assert json.loads((run / "config.json").read_text())["budget_estimate"]["training_gflops"] > 0


def test_a_given_image_size_is_kept(
    photo_folder: Path, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_device(monkeypatch)  # the budget alone would train at 32 px
    run = budgeted_run(photo_folder, {**options, "img_size": 64}, 10.0, None, StepCosts(1.0), monkeypatch)[0]
    assert trained_size(run.run_dir) == 64


@pytest.mark.parametrize("recorded", [True, False], ids=["size-recorded", "run-of-foveal-0.1.0"])
def test_a_resumed_run_keeps_the_chosen_resolution(
    photo_folder: Path, options: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:
    """Resumed on a device where the budget would choose another size, the run continues at its own
    (else its checkpoint would not even load) and ends as if never stopped. A run of Foveal 0.1.0
    recorded the size only with its preprocessing."""
    slow_device(monkeypatch)
    checkpointed = {**options, "checkpoint_every_steps": 1, "keep_checkpoints": 1000}
    costs = StepCosts(0.15, validation_seconds=0.1)
    full = budgeted_run(photo_folder, checkpointed, 10.0, 2, costs, monkeypatch)[0].run_dir
    size = trained_size(full)
    resumed = stopped_under_final_plan(full, tmp_path / "resumed")
    if not recorded:
        record = json.loads((resumed / "config.json").read_text())
        record["train"]["data"]["img_size"] = None
        (resumed / "config.json").write_text(json.dumps(record))
    slow_device(monkeypatch, gflops=1e6)  # now the budget would train at 112 px
    train(resume=resumed, quiet=True, clock=costs.clock)
    _, info = load_model(resumed / "weights" / "best.safetensors", torch.device("cpu"))
    assert info.preprocessing.img_size == size
    expected, got = (load_file(str(run / "weights/last.safetensors")) for run in (full, resumed))
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.slow
def test_the_command_keeps_a_40_second_budget_on_photographs(tmp_path: Path) -> None:
    """The honest check, on the real clock: `foveal train DIR --time 40s` on 224-px images returns
    within the budget plus a small margin, with the model saved and evaluated."""
    photos = make_class_folder(tmp_path / "photos", per_class=100, size=NATIVE)
    budget, margin = 40.0, 3.0
    started = time.perf_counter()
    done = foveal_cli_subprocess(
        "train", str(photos), "--time", f"{budget:g}s", "--out", str(tmp_path / "runs"), "--no-report"
    )
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    print(f"wall {wall:.1f} s for a {budget:g} s budget\n{done.stdout}")
    assert wall <= budget + margin, wall
    assert_saved_and_evaluated(tmp_path / "runs" / "train")
