"""The report inside the time budget (issue #33): its explaining sections are counted in forward
passes, kept out of training's plan (on a FakeClock), shortened or left to `foveal report` when the
time left is short, and the whole command, report included, returns inside `--time`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from clirun import foveal_cli_subprocess
from PIL import Image, ImageDraw, ImageFilter
from test_replan import made_up_run, made_up_trainer

import foveal
from foveal.evaluation.plots import DPI
from foveal.explanation import faithfulness as faithfulness_module
from foveal.explanation.report_plan import (
    FAITHFULNESS_IMAGES,
    MAP_PASSES,
    REPORT_FIXED_SECONDS,
    REPORT_MARGIN,
    WORST_MISTAKES,
    ReportCosts,
    ReportPlan,
    explanation_passes,
    faithfulness_passes,
    plan_report,
    report_costs,
    report_reserve,
)
from foveal.explanation.time_limit import TimeLimit
from foveal.models.maps import METHODS
from foveal.reporting import write_report
from foveal.reporting.figures import plot_class_counts
from foveal.training.budget import FINAL_EVALUATION_MARGIN, FINISH_SECONDS
from foveal.training.clock import FakeClock
from foveal.training.replan import budget_ends_run, end_report_plan

ATTENTION_MODEL = ["pool", "rollout", "grad-rollout", "gradcam"]  # a hybrid's or foveal-*'s methods


def test_a_report_is_counted_in_forward_passes() -> None:
    assert set(MAP_PASSES) == {*METHODS, "random"}  # a new method must say what its map costs
    # Each of 4 methods and the random maps: the class in 2 views, and 2 curves of 17 points in 2 views;
    # the maps: 1 + 1 + 3 + 3 passes.
    assert faithfulness_passes(ATTENTION_MODEL, views=2) == 5 * 2 * (1 + 2 * 17) + 8 == 358
    assert explanation_passes(ATTENTION_MODEL, views=2) == 2 + 1  # the labels, a rollout map
    assert explanation_passes(["gradcam"], views=1) == 1 + 3  # a CNN's map takes a backward pass
    costs = report_costs(0.01, 2, ATTENTION_MODEL)  # 10 ms an image and view, on the validations
    assert costs.fixed == REPORT_FIXED_SECONDS
    assert costs.per_mistake == pytest.approx(3 * 0.01 * REPORT_MARGIN)
    assert costs.per_faithfulness_image == pytest.approx(358 * 0.01 * REPORT_MARGIN)
    assert costs.per_pointing_mosaic == pytest.approx(8 * 0.01 * REPORT_MARGIN)  # one map of each method
    expected = costs.fixed + 2 * costs.per_mistake + 10 * costs.per_faithfulness_image
    assert costs.seconds(ReportPlan(2, 10, 20)) == pytest.approx(expected + 20 * costs.per_pointing_mosaic)


def test_the_pointing_game_takes_its_share_before_the_faithfulness() -> None:
    costs = ReportCosts(fixed=5.0, per_mistake=0.5, per_faithfulness_image=2.0, per_pointing_mosaic=0.1)
    assert plan_report(5 + 6 + 10 + 60, costs, held_out=500) == ReportPlan(12, 30, 100)
    assert plan_report(5 + 6 + 3, costs, held_out=500) == ReportPlan(12, 0, 30)
    assert plan_report(5 + 6 + 1.9, costs, held_out=500) == ReportPlan(12, 0, 0)  # 19 mosaics < 20


COSTS = ReportCosts(fixed=5.0, per_mistake=0.5, per_faithfulness_image=2.0)


def test_without_a_budget_the_report_is_whole() -> None:
    assert ReportPlan() == ReportPlan(WORST_MISTAKES, FAITHFULNESS_IMAGES) == ReportPlan(12, 100)
    assert plan_report(5 + 6 + 1_000, COSTS, held_out=500) == ReportPlan()  # room for all: the same


def test_a_short_budget_measures_faithfulness_on_fewer_images() -> None:
    assert plan_report(5 + 6 + 60, COSTS, held_out=500) == ReportPlan(12, 30)
    assert plan_report(5 + 6 + 61.9, COSTS, held_out=500) == ReportPlan(12, 30)  # whole images only
    # Never more than the held-out images; the floor is then all of them.
    assert plan_report(5 + 3 + 12, COSTS, held_out=6) == ReportPlan(6, 6)


def test_a_section_that_cannot_have_its_floor_is_left_out() -> None:
    assert plan_report(5 + 6 + 19, COSTS, held_out=500) == ReportPlan(12, 0)  # 9 images < 10
    assert plan_report(5 + 3 + 10, COSTS, held_out=6) == ReportPlan(6, 0)  # 5 of 6 images
    assert plan_report(5 + 1.9, COSTS, held_out=500) == ReportPlan(0, 0)  # 3 mistakes < 4
    assert plan_report(1.0, COSTS, held_out=500) == ReportPlan(0, 0)  # not even the figures: none


def test_a_run_keeps_a_share_of_its_budget_for_the_report() -> None:
    # A tenth of 600 s: the 12 mistakes (6 s), then 27 images (54 s); the figures on top.
    assert report_reserve(600.0, COSTS, held_out=500) == COSTS.seconds(ReportPlan(12, 27)) == 65.0
    assert report_reserve(6_000.0, COSTS, held_out=500) == COSTS.seconds(ReportPlan()) == 211.0


def test_the_plan_keeps_the_reports_time_out_of_training(tmp_path: Path) -> None:
    """test_replan's run re-planned after epoch 1 (111 steps without a report), now with one."""
    clock = FakeClock()
    trainer = made_up_trainer(clock, steps=17, step_seconds=0.15, planned_steps=125)
    clock.advance(0.1)
    trainer.validation_seconds, trainer.report_methods = 0.1, ATTENTION_MODEL
    assert not budget_ends_run(made_up_run(tmp_path, report=True), trainer)
    # 0.1 s for 3 images in one view: 3 mistakes of 2 passes (0.4 s with the margin) fit in 2.4 s,
    # a faithfulness image (183 passes, 12.2 s) does not.
    report = REPORT_FIXED_SECONDS + 3 * 2 * 0.1 / 3 * REPORT_MARGIN
    end = 0.1 + 0.1 * (3 + 33) / 3 * FINAL_EVALUATION_MARGIN + FINISH_SECONDS
    left = 24 - 2.65 - end - report - 0.15
    assert trainer.progress.planned_steps == 17 + int(left // (0.15 + 0.1 / 17)) == 76


def finished_trainer(elapsed: float, validation_seconds: float) -> object:
    """A trainer at its run's end, `elapsed` seconds in on a FakeClock, its validation timed."""
    trainer = made_up_trainer(FakeClock(), steps=10, step_seconds=elapsed / 10)
    trainer.validation_seconds, trainer.report_methods = validation_seconds, ATTENTION_MODEL
    return trainer


def test_at_the_end_the_report_takes_the_time_left(tmp_path: Path) -> None:
    """500 held-out images validated in 2 s: 4 ms a pass, 8 ms with the margin, so 1.464 s an image's
    faithfulness (183 passes), 16 ms a mistake (2 passes) and 64 ms a pointing mosaic (8 passes); the
    figures 5 s."""
    assert REPORT_MARGIN == 2.0
    run = made_up_run(tmp_path, budget=600.0, report=True, val_images=500)
    # 50 s: 45 after the figures, 44.808 after 12 mistakes, 38.408 after 100 mosaics: 26 images
    assert end_report_plan(run, finished_trainer(550.0, 2.0)) == ReportPlan(12, 26, 100)
    # 10 s: 4.808 after the mistakes, room for 75 mosaics and no image
    assert end_report_plan(run, finished_trainer(590.0, 2.0)) == ReportPlan(12, 0, 75)
    assert end_report_plan(run, finished_trainer(599.0, 2.0)) == ReportPlan(0, 0, 0)  # 1 s: the figures
    assert end_report_plan(run, finished_trainer(100.0, 2.0)) == ReportPlan()  # done early: whole
    unbudgeted = made_up_run(tmp_path, budget=None, report=True, val_images=500)
    assert end_report_plan(unbudgeted, finished_trainer(10_000.0, 2.0)) == ReportPlan()


def test_the_reports_fixed_part_does_not_grow_with_the_classes(tmp_path: Path) -> None:
    """300 classes once drew a 137-inch class-count figure (a thousand, 452); it is capped as the
    confusion matrix is (22 inches at DPI dots an inch, labels outside it included)."""
    classes = [f"class {n}" for n in range(300)]
    png = plot_class_counts(classes, [5] * 300, [1] * 300, tmp_path / "counts.png")
    with Image.open(png) as image:
        assert image.width <= 23 * DPI


def noise_folder(root: Path, per_class: int = 20) -> Path:
    """root/<a|b>/<n>.png: 16-px noise, so that a model trained on it gets many held-out images wrong."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{n}.png")
    return root


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("noise")
    result = foveal.train(
        data=str(noise_folder(base / "noise")), model="foveal-tiny", epochs=1, batch_size=8, img_size=16,
        val_fraction=0.3, out=str(base / "runs"), report=False, quiet=True,
    )  # fmt: skip
    return result.run_dir


def test_the_report_says_how_many_images_the_budget_left_room_for(noise_run: Path) -> None:
    page = write_report(noise_run, plan=ReportPlan(4, 10), quiet=True).read_text()
    assert "Deletion and insertion curves on 10 evenly spaced held-out images" in page
    assert f"The time budget left room for 10; foveal report {noise_run} measures 12." in page
    mistakes = re.search(r"The (\d+) wrong predictions made with the highest confidence", page)
    assert mistakes is not None and 1 <= int(mistakes.group(1)) <= 4


def test_a_section_left_out_names_the_command_that_writes_it(noise_run: Path) -> None:
    page = write_report(noise_run, plan=ReportPlan(0, 0), quiet=True).read_text()
    hint = f"Left out to keep the time budget (--time): foveal report {noise_run} writes it"
    assert page.count(hint) == 2 and "Deletion and insertion curves" not in page
    whole = write_report(noise_run, quiet=True).read_text()  # `foveal report RUN`: no budget
    assert hint not in whole and "curves on 12 evenly spaced held-out images" in whole


def photo_folder(root: Path, per_class: int = 24, size: int = 224) -> Path:
    """root/<warm|cool>/<n>.jpg: photo-like JPEGs, blurred ellipses on a shaded background; the
    class sets the ellipses' colours."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("warm", "cool")):
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            top, bottom = rng.uniform(40, 220, 2)
            shade = np.linspace(top, bottom, size)[:, None, None]  # (H, 1, 1): lit from one side
            image = Image.fromarray(np.broadcast_to(shade, (size, size, 3)).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            for _ in range(4):
                (x, y), (rx, ry) = rng.uniform(0, size, 2), rng.uniform(15, 60, 2)
                green = int(rng.uniform(60, 160))
                colour = (220, green, 40) if label == 0 else (40, green, 220)
                draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=colour)
            image.filter(ImageFilter.GaussianBlur(3)).save(root / name / f"{n:03d}.jpg", quality=85)
    return root


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_the_whole_command_returns_inside_its_budget_report_included(tmp_path: Path) -> None:
    """The honest check, on the real clock: `foveal train DIR --time 40s` on 224-px photos returns,
    report.html written, within the budget plus 5% or 10 s, whichever is more."""
    budget = 40.0
    started = time.perf_counter()
    done = foveal_cli_subprocess(
        "train", str(photo_folder(tmp_path / "photos")), "--time", f"{budget:g}s", "--out",
        str(tmp_path / "runs"), timeout=4 * budget,
    )  # fmt: skip
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"wall {wall:.1f} s for a {budget:g} s budget\n{done.stderr[-2000:]}")
    page = (tmp_path / "runs" / "train" / "report.html").read_text()
    measured = re.search(r"Deletion and insertion curves on (\d+) evenly spaced held-out images", page)
    left_out = "Left out to keep the time budget (--time): foveal report " in page
    assert measured is not None or left_out
    assert wall <= budget + max(0.05 * budget, 10.0), wall


def test_a_machine_slower_at_the_end_costs_images_not_time(
    noise_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan gave the faithfulness all 12 images, but the machine has turned slow: each curve now
    takes 0.3 s more (1.5 s for a chunk of 2 images, 5 maps), 9 s for the section. With 2 s left it
    stops after the chunks that fit, below the floor of 10, and leaves the section out with the hint."""
    real_curves = faithfulness_module.probability_curves
    calls = []

    def slow_curves(*args: object, **kwargs: object) -> object:
        calls.append(1)
        time.sleep(0.3)
        return real_curves(*args, **kwargs)

    monkeypatch.setattr(faithfulness_module, "probability_curves", slow_curves)
    plan = ReportPlan(0, 12, 0, limit=TimeLimit.after(2.0))
    page = write_report(noise_run, plan=plan, quiet=True).read_text()
    assert 0 <= len(calls) <= 10  # at most 2 chunks of 5 maps: never the 30 of the whole section
    hint = f"Left out to keep the time budget (--time): foveal report {noise_run} writes it, measuring it"
    assert hint in page and "Deletion and insertion curves" not in page
