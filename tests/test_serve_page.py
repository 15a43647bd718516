"""The served web page in a real browser (headless Chromium): pick an image, read the predicted label
and see the heatmap overlay load, with no console errors (issue #14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import launch_chromium, needs_chromium, record_errors
from synthetic import tiny_run, with_threshold

import foveal
from foveal.explanation.workflow import default_method
from foveal.serving.process import ServerProcess

SCREENSHOT = os.environ.get("FOVEAL_SCREENSHOT")  # where to keep the page's picture (docs/images/...)


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
@needs_chromium
def test_the_page_explains_an_uploaded_image_in_chromium(tmp_path_factory: pytest.TempPathFactory) -> None:
    from playwright.sync_api import sync_playwright

    run, data = tiny_run(tmp_path_factory.mktemp("page"), "foveal-nano", per_class=6)
    image = sorted(data.rglob("*.png"))[0]
    prediction = foveal.load(run, device="cpu").predict([image])[0]
    expected = "unknown: " if prediction.unknown else prediction.label + " ("
    with ServerProcess([str(run), "--threads", "1"]) as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        errors = record_errors(page)
        page.goto(server.url + "/", wait_until="load")
        page.wait_for_function("document.getElementById('method').options.length > 0")
        methods = page.eval_on_selector_all("#method option", "options => options.map(o => o.value)")
        first_method = page.eval_on_selector("#method", "select => select.value")
        page.set_input_files("#file", str(image))
        page.wait_for_function("document.getElementById('top-label').textContent.length > 0")
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
        top_label = page.text_content("#top-label")
        first_caption = page.text_content("#overlay-caption")
        overlay_width = page.eval_on_selector("#overlay", "img => img.naturalWidth")
        bars = page.eval_on_selector_all("#bars .row", "rows => rows.length")
        if len(methods) > 1:  # switching the method explains the same image again
            page.select_option("#method", methods[-1])
            page.wait_for_function(
                f"document.getElementById('overlay-caption').textContent.startsWith('{methods[-1]}')"
            )
        if SCREENSHOT:
            Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOT, full_page=True)
        # A model to which nothing looks familiar: the page says unknown, and names the nearest class.
        strict_model = with_threshold(run, run / "strict.safetensors", float("inf"))
        with ServerProcess([str(strict_model), "--threads", "1"]) as strict:
            page.goto(strict.url + "/", wait_until="load")
            page.wait_for_function("document.getElementById('method').options.length > 0")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('top-label').textContent.length > 0")
            unknown_label = page.text_content("#top-label")
        browser.close()
    assert errors == []
    # The page explains with the method `foveal explain` and /explain use when none is asked for.
    assert first_method == default_method(methods) == "rollout" and first_caption.startswith("rollout map")
    assert top_label.startswith(expected)
    assert unknown_label.startswith("unknown: unlike every class") and prediction.labels[0] in unknown_label
    assert overlay_width >= 224 and bars == min(5, len(foveal.load(run, device="cpu").classes))
