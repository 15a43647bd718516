"""`foveal compare`: every model trained the same way, measured the same way, in one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import foveal_cli
from synthetic import make_class_folder


@pytest.mark.slow  # ~30 s: trains three models end to end (the default suite keeps under 5 minutes)
def test_compare_trains_each_model_and_writes_the_table(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "shapes", per_class=10)
    models = "foveal-tiny,cnn-resnet8"
    out = str(tmp_path / "runs")
    done = foveal_cli("compare", str(data), "--models", models, "--epochs", "1", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "== " not in done.stderr and "report:" not in done.stderr  # --quiet reaches every stage
    folder = tmp_path / "runs" / "compare"
    comparison = json.loads((folder / "comparison.json").read_text())
    assert [m["model"] for m in comparison["models"]] == ["foveal-tiny", "cnn-resnet8"]
    for row in comparison["models"]:
        assert 0 <= row["top1"] <= 1 and 0 <= row["macro_f1"] <= 1
        assert row["top_k"] == 2  # the k of its top5: 3 classes, so top-2
        assert row["parameters"] > 1000 and row["gflops_per_image"] > 0 and row["latency_ms"] > 0
        assert row["train_images_per_second"] > 0 and row["peak_memory_mb"] > 50  # a Python with torch
        assert (folder / row["model"] / "weights" / "best.safetensors").is_file()
        report = (folder / row["model"] / "report.html").read_text()
        assert "<h2>Comparison</h2>" in report and "cnn-resnet8" in report
    # Same split for every model: the held-out sets are the same images.
    splits = [
        json.loads((folder / m / "split.json").read_text())["val"] for m in ("foveal-tiny", "cnn-resnet8")
    ]
    assert splits[0] == splits[1]
    assert "| foveal-tiny |" in done.stdout and "| cnn-resnet8 |" in done.stdout
    assert (folder / "comparison.md").read_text().startswith("| model | top-1 |")


def test_compare_refuses_unknown_or_single_models(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "shapes", per_class=4)
    unknown = foveal_cli("compare", str(data), "--models", "foveal-nano,cnn-resnet21", cwd=tmp_path)
    assert unknown.returncode == 1 and "Did you mean 'cnn-resnet20'" in unknown.stderr
    single = foveal_cli("compare", str(data), "--models", "foveal-nano", cwd=tmp_path)
    assert single.returncode == 1 and "two or more" in single.stderr
    missing = foveal_cli("compare", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    for done in (unknown, single, missing):
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing is created before the input is checked
