"""The HTML report: what it holds, that it is self-contained, that Chromium renders it cleanly,
and calibration's arithmetic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from browser import launch_chromium, needs_chromium, record_errors
from clirun import foveal_cli
from synthetic import make_class_folder

import foveal
from foveal.reporting.calibration import calibration


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run on an imbalanced 3-class folder with one unreadable file: its report.html."""
    base = tmp_path_factory.mktemp("report")
    data = make_class_folder(base / "shapes", per_class=16)
    for extra in sorted((data / "triangle").iterdir())[4:]:  # 4 triangles against 16 of the others
        extra.unlink()
    (data / "circle" / "broken.png").write_bytes(b"\x89PNG truncated")
    result = foveal.train(
        data=str(data), model="foveal-tiny", epochs=3, batch_size=8, img_size=16, lr=3e-3,
        out=str(base / "runs"), quiet=True,
    )  # fmt: skip
    return result.run_dir


def test_training_ends_with_a_self_contained_report(reported_run: Path) -> None:
    page = (reported_run / "report.html").read_text()
    headings = ("Data", "Training", "Evaluation on the held-out images", "Calibration", "Open-set rejection")
    for heading in (*headings, "Worst mistakes", "Does the map point at the object?"):
        assert f"<h2>{heading}</h2>" in page
    for content in (
        "precision",
        "macro avg",
        "top-1",
        "Expected calibration error",
        "broken.png",
        "Imbalanced",
        "Faithfulness of the explanations",
        "<td>random</td>",
        "familiarity below",
        "The grid pointing game on 100 mosaics",
        "<td>grad-rollout</td>",
    ):
        assert content in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 7 and all(src.startswith("data:image/png;base64,") for src in images)
    # Offline: nothing is fetched from anywhere (no scripts, stylesheets, fonts or remote images).
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def test_report_command_rewrites_it(reported_run: Path) -> None:
    (reported_run / "report.html").unlink()
    done = foveal_cli("report", str(reported_run))
    assert done.returncode == 0, done.stderr
    stages = ("loading the images", "evaluating the model on", "the pointing game on", "measuring how")
    for stage in stages:
        assert f"report: {stage}" in done.stderr  # never silent while it works (issue #16)
    assert (reported_run / "report.html").stat().st_size > 10_000


def test_report_of_a_folder_that_is_no_run_says_so(tmp_path: Path) -> None:
    done = foveal_cli("report", str(tmp_path))
    assert (
        done.returncode == 1 and "not a Foveal run folder" in done.stderr and "Traceback" not in done.stderr
    )


@needs_chromium
def test_report_renders_in_headless_chromium_with_every_image(reported_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = record_errors(page)
        page.goto((reported_run / "report.html").as_uri(), wait_until="load")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0, i.naturalWidth])"
        )
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert errors == []
    assert len(images) == 7 and all(loaded for _, loaded, _ in images), images
    assert all(width >= 200 for _, _, width in images)  # real pictures, not placeholders
    assert screenshot.stat().st_size > 50_000


def test_calibration_of_a_calibrated_and_an_overconfident_model() -> None:
    # 1,000 predictions at 75% confidence, 750 right: calibrated, ECE 0.
    probs = torch.tensor([0.75, 0.25]).expand(1000, 2)
    labels = torch.cat([torch.zeros(750), torch.ones(250)]).long()
    calibrated = calibration(probs.log(), labels)
    assert calibrated.ece == pytest.approx(0.0, abs=1e-5)
    assert calibrated.bin_count[11] == 1000  # 0.75 lies in [11/15, 12/15)
    assert calibrated.bin_accuracy[11] == pytest.approx(0.75)
    assert calibrated.bin_confidence[11] == pytest.approx(0.75)
    assert calibrated.bin_accuracy[0] is None  # empty bins have no accuracy
    # The same confidence, right only half the time: ECE is the gap, 0.25.
    half = torch.cat([torch.zeros(500), torch.ones(500)]).long()
    assert calibration(probs.log(), half).ece == pytest.approx(0.25, abs=1e-5)
