"""Open-set rejection (predictor/rejection.py): the threshold's arithmetic, and "unknown" carried from a
run's calibration through the saved model to predict, evaluate and the report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli
from synthetic import tiny_run, with_threshold

import foveal
from foveal.errors import FovealError, ModelFileError
from foveal.predictor.inference import Outputs
from foveal.predictor.rejection import SCORES, Rejection, calibrate, familiarity
from foveal.predictor.saved import load_model, save_model


def _clusters(n: int, seed: int, spread: float = 1.0) -> tuple[Outputs, torch.Tensor]:
    """n images of 3 classes whose pooled features (n, 8) lie around the class centres 0, 6 and -6
    along a correlated direction, with logits (n, 3) that favour the right class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.tensor([0.0, 6.0, -6.0])[labels, None] * torch.ones(8)
    mixing = torch.eye(8) + 0.5 * torch.ones(8, 8)  # correlated features: the covariance matters
    pooled = centres + spread * torch.randn(n, 8, generator=generator) @ mixing
    logits = torch.randn(n, 3, generator=generator) * 3 + 4 * torch.nn.functional.one_hot(labels, 3)
    return Outputs(logits, pooled), labels


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_the_threshold_rejects_the_stated_share_of_held_out_images(score: str, rate: float) -> None:
    held_out, _ = _clusters(1000, seed=0)
    rejection = calibrate(held_out, _clusters(600, seed=1), score, rate)
    assert rejection is not None and rejection.score == score and rejection.calibration_images == 1000
    assert int(rejection.unknown(held_out).sum()) == int(rate * 1000)


def test_each_score_ranks_a_typical_image_above_an_odd_one() -> None:
    fit = _clusters(600, seed=1)
    typical = Outputs(torch.tensor([[8.0, 0.0, 0.0]]), torch.zeros(1, 8))  # at class 0's mean
    odd = Outputs(torch.tensor([[1.0, 1.0, 1.0]]), torch.full((1, 8), 3.0) * torch.tensor([1.0, -1] * 4))
    for score in SCORES:
        rejection = calibrate(_clusters(300, seed=2)[0], fit, score)
        assert rejection.familiarity(typical) > rejection.familiarity(odd), score
    assert familiarity(odd, "msp").item() == pytest.approx(1 / 3)
    assert familiarity(odd, "energy").item() == pytest.approx(1 + math.log(3))


def test_mahalanobis_measures_distance_in_units_of_the_spread() -> None:
    """Whitened, a point one standard deviation from a class mean along any direction is at distance
    ~1 (the fitted covariance is the true one, to sampling error)."""
    held_out, _ = _clusters(300, seed=2)
    rejection = calibrate(held_out, _clusters(20_000, seed=1), "mahalanobis")
    distance = rejection.distance
    covariance = torch.eye(8) + 0.5 * torch.ones(8, 8)
    covariance = covariance @ covariance.T  # of the features around each mean
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    for k in range(8):  # one standard deviation along each principal axis of class 0
        step = eigenvectors[:, k] * eigenvalues[k].sqrt()
        assert -distance.familiarity(step[None]).item() == pytest.approx(1.0, abs=0.05)
    # and it is kept exactly through the model file's JSON
    again = Rejection.from_dict(json.loads(json.dumps(rejection.to_dict())))
    assert again == rejection and torch.equal(again.familiarity(held_out), rejection.familiarity(held_out))


def test_few_images_still_give_an_invertible_covariance() -> None:
    """4 images of 64 features: the covariance is singular, the shrinkage keeps distances finite."""
    pooled = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    fit = (Outputs(torch.randn(4, 2), pooled), torch.tensor([0, 1, 0, 1]))
    rejection = calibrate(Outputs(torch.randn(3, 2), pooled[:3] + 0.1), fit)
    assert rejection.score == "mahalanobis" and math.isfinite(rejection.threshold)


def test_without_features_to_fit_the_score_falls_back_to_msp() -> None:
    held_out, _ = _clusters(100, seed=2)
    assert calibrate(held_out).score == "msp"  # no training images given
    assert calibrate(Outputs(held_out.logits, None), _clusters(60, seed=1)).score == "msp"  # no features


def test_nothing_to_calibrate_gives_no_threshold() -> None:
    assert calibrate(Outputs(torch.empty(0, 3), torch.empty(0, 8))) is None
    assert calibrate(Outputs(torch.tensor([[1.0, float("nan")]]), None)) is None  # a diverged model
    with pytest.raises(FovealError, match="false rejection rate"):
        calibrate(_clusters(4, seed=0)[0], false_rejection_rate=1.0)
    with pytest.raises(FovealError, match="unknown familiarity score"):
        familiarity(_clusters(4, seed=0)[0], "cosine")


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("rejection"), "foveal-tiny", per_class=40, epochs=2)


def test_a_run_calibrates_its_threshold_on_its_held_out_images(run_and_data: tuple[Path, Path]) -> None:
    run, _ = run_and_data
    classifier = foveal.load(run, device="cpu")
    metrics = json.loads((run / "metrics.json").read_text())
    rejection = classifier.rejection
    assert rejection is not None and rejection.false_rejection_rate == 0.05
    assert rejection.score == "mahalanobis"  # the default, fitted on the run's training images
    assert rejection.distance.centres.shape == (3, rejection.distance.whitening.shape[0])
    assert rejection.calibration_images == metrics["num_samples"] == 12  # 10% of 40 a class
    assert metrics["rejection"]["threshold"] == rejection.threshold
    assert metrics["rejection"]["rejected"] == int(0.05 * 12)
    # last.safetensors carries the threshold when it holds the best epoch's weights, and only then.
    last = foveal.load(run / "weights" / "last.safetensors", device="cpu")
    with (run / "results.csv").open() as rows:
        best_is_last = metrics["epoch"] == max(int(row["epoch"]) for row in csv.DictReader(rows))
    assert (last.rejection == rejection) if best_is_last else (last.rejection is None)


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
    assert rows[0].startswith("file_name,label,probability,") and rows[0].endswith(",unknown,familiarity")
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
