"""Open-set rejection (foveal/rejection.py): the threshold's arithmetic, and "unknown" carried from a
run's calibration through the saved model to predict, evaluate and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli
from synthetic import tiny_run, with_threshold

import foveal
from foveal.errors import FovealError, ModelFileError
from foveal.rejection import SCORES, calibrate, familiarity
from foveal.saved import load_model, save_model


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_the_threshold_rejects_the_stated_share_of_held_out_images(score: str, rate: float) -> None:
    logits = torch.randn(1000, 7, generator=torch.Generator().manual_seed(0)) * 3
    rejection = calibrate(logits, score, rate)
    assert rejection is not None and rejection.calibration_images == 1000
    assert int(rejection.unknown(logits).sum()) == int(rate * 1000)
    # higher is more familiar: the images the model is surest of are the last to go
    sure = torch.zeros(1, 7)
    sure[0, 0] = 50.0
    assert not rejection.unknown(sure).item()


def test_msp_and_energy_rank_a_confident_image_above_a_flat_one() -> None:
    confident, flat = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0]])
    for score in SCORES:
        assert familiarity(confident, score) > familiarity(flat, score)
    assert familiarity(flat, "msp").item() == pytest.approx(1 / 3)
    assert familiarity(flat, "energy").item() == pytest.approx(1 + math.log(3))


def test_nothing_to_calibrate_gives_no_threshold() -> None:
    assert calibrate(torch.empty(0, 3)) is None
    assert calibrate(torch.tensor([[1.0, float("nan")]])) is None  # a diverged model
    with pytest.raises(FovealError, match="false rejection rate"):
        calibrate(torch.randn(4, 3), false_rejection_rate=1.0)
    with pytest.raises(FovealError, match="unknown familiarity score"):
        familiarity(torch.randn(4, 3), "mahalanobis")


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("rejection"), "foveal-tiny", per_class=40, epochs=2)


def test_a_run_calibrates_its_threshold_on_its_held_out_images(run_and_data: tuple[Path, Path]) -> None:
    run, _ = run_and_data
    classifier = foveal.load(run, device="cpu")
    metrics = json.loads((run / "metrics.json").read_text())
    rejection = classifier.rejection
    assert rejection is not None and rejection.false_rejection_rate == 0.05
    assert rejection.calibration_images == metrics["num_samples"] == 12  # 10% of 40 a class
    assert metrics["rejection"]["threshold"] == rejection.threshold
    assert metrics["rejection"]["rejected"] == int(0.05 * 12)


def test_predict_marks_images_below_the_threshold_unknown(
    run_and_data: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data = run_and_data
    files = sorted(data.rglob("*.png"))[::20]  # 6 images
    scores = foveal.load(run, device="cpu").predict(files, top_k=2)
    middle = sorted(p.familiarity for p in scores)[3]
    model = with_threshold(run, tmp_path / "model.safetensors", middle)
    classifier = foveal.load(model, device="cpu")
    marked = classifier.predict(files, top_k=2)
    plain = classifier.predict(files, top_k=2, reject=False)
    assert [p.unknown for p in marked] == [p.familiarity < middle for p in scores] and sum(
        p.unknown for p in marked
    ) == 3
    for m, p in zip(marked, plain):
        assert m.labels == p.labels and m.probabilities == p.probabilities  # the nearest class is kept
        assert m.label == ("unknown" if m.unknown else m.labels[0])
        assert not p.unknown and p.familiarity is None and p.label == p.labels[0]

    as_json = json.loads(foveal_cli("predict", str(model), *map(str, files), "--format", "json").stdout)
    assert [r["unknown"] for r in as_json] == [p.unknown for p in marked]
    assert [r["label"] for r in as_json] == [p.label for p in marked]
    table = foveal_cli("predict", str(model), *map(str, files)).stdout
    assert table.count("unknown (nearest:") == 3 and "3 of 6 images marked unknown" in table
    off = foveal_cli("predict", str(model), *map(str, files), "--no-reject", "--format", "csv").stdout
    rows = off.splitlines()
    assert rows[0] == "source,rank,label,probability,unknown,familiarity"
    assert all(row.endswith(",0,") for row in rows[1:])


def test_evaluate_counts_the_images_it_would_reject(run_and_data: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = run_and_data
    model = with_threshold(run, tmp_path / "model.safetensors", float("inf"))  # everything is unknown
    done = foveal_cli("evaluate", str(model), str(data), "--json", "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    counted = json.loads(done.stdout)["rejection"]
    assert counted["rejected"] == 120 and counted["rejected_fraction"] == 1.0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["rejection"] == counted
    said = foveal_cli("evaluate", str(model), str(data), "--out", str(tmp_path / "eval2")).stdout
    assert "unknown: 120 of 120 images (100.0%)" in said and "--no-reject" in said
    off = foveal_cli(
        "evaluate", str(model), str(data), "--json", "--no-reject", "--out", str(tmp_path / "e3")
    )
    assert json.loads(off.stdout)["rejection"] is None


def test_a_damaged_threshold_is_a_damaged_model_file(run_and_data: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = run_and_data
    model, info = load_model(run)
    info.extra["rejection"] = {"score": "msp"}  # no threshold
    broken = save_model(tmp_path / "broken.safetensors", model, info)
    with pytest.raises(ModelFileError, match="is not a Foveal model"):
        foveal.load(broken, device="cpu")
    done = foveal_cli("predict", str(broken), str(next(run_and_data[1].rglob("*.png"))))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "not a Foveal model" in done.stderr
