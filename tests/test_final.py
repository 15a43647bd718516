"""The end of a run (training/final.py): the kept model evaluated on every held-out image, its open-set
threshold calibrated and saved with it, metrics.json written last."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from synthetic import make_class_folder

from foveal.errors import FovealError
from foveal.predictor.saved import load_model
from foveal.training import final, train
from foveal.training.final import calibrate_rejection, final_evaluation

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    """A finished two-epoch run of foveal-tiny on 36 images of 16 px (a few seconds)."""
    root = tmp_path_factory.mktemp("final")
    options = {"model": "foveal-tiny", "batch_size": 8, "img_size": 16, "report": False}
    return train(
        data=str(make_class_folder(root / "shapes")), quiet=True, epochs=2, out=str(root / "runs"), **options
    )


def run_of(result) -> SimpleNamespace:
    """What final.py reads of a run (training/setup.RunSetup's fields it uses)."""
    return SimpleNamespace(run_dir=result.run_dir, device=CPU, data=result.data, config=result.config)


def test_no_best_model_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FovealError, match="no best model; lower --lr"):
        final_evaluation(SimpleNamespace(run_dir=tmp_path), 1, last_epoch=1)


def test_the_final_evaluation_reads_every_held_out_image_and_writes_metrics_last(finished) -> None:
    metrics = finished.run_dir / "metrics.json"
    metrics.unlink()  # as if killed before its end: the evaluation is done again, the same
    evaluation = final_evaluation(run_of(finished), finished.best_epoch, last_epoch=finished.epochs)
    assert evaluation.metrics.num_samples == len(finished.data.val)
    assert evaluation.metrics.top1 == finished.metrics.top1
    assert json.loads(metrics.read_text())["top1"] == finished.metrics.top1


def test_the_threshold_is_saved_with_the_best_weights_and_with_last_only_when_they_are_the_same(
    finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    best = finished.run_dir / "weights" / "best.safetensors"
    model, info = load_model(best, CPU)
    saved: list[str] = []
    monkeypatch.setattr(final, "save_model", lambda path, model, info: saved.append(path.name))
    for also_last, names in ((False, ["best.safetensors"]), (True, ["best.safetensors", "last.safetensors"])):
        saved.clear()
        evaluation = final.evaluate(model, finished.data.val, info.preprocessing, device=CPU)
        calibrate_rejection(run_of(finished), model, info, evaluation, best, also_last=also_last)
        assert saved == names
        assert info.extra["rejection"]["score"] and evaluation.rejection is not None
