"""Numerical faults, early stopping and unsafe files: training stops cleanly and nothing runs code."""

from __future__ import annotations

import math
import os
import struct
import time
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli

from foveal.errors import FovealError, ModelFileError
from foveal.predictor.saved import load_model
from foveal.training import train, validation
from foveal.training.loop import TrainingDiverged
from foveal.training.state import list_checkpoints, load_checkpoint


class Payload:
    """A pickle that runs a command when unpickled: what a malicious model file would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_file(path: Path, marker: Path) -> Path:
    torch.save({"model": Payload(marker)}, path)  # torch.save pickles the payload
    return path


def test_a_diverging_learning_rate_stops_with_advice(class_folder: Path, tiny_train_options: dict) -> None:
    options = {
        **tiny_train_options,
        "lr": 1e12,
        "max_bad_steps": 2,
        "checkpoint_every_steps": 1,
        "grad_clip": 0.0,
        "epochs": 3,
    }
    with pytest.raises(TrainingDiverged, match="non-finite steps in a row.*lower --lr"):
        train(data=str(class_folder), quiet=True, **options)
    run = Path(options["out"]) / "train"
    for checkpoint in list_checkpoints(run / "checkpoints"):
        state = load_checkpoint(checkpoint)  # every checkpoint left behind loads and is finite
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert "update skipped" in (run / "events.log").read_text()


def test_the_cli_reports_divergence_in_one_line(class_folder: Path, tmp_path: Path) -> None:
    done = foveal_cli(
        "train",
        str(class_folder),
        "--model",
        "foveal-tiny",
        "--img-size",
        "16",
        "--batch-size",
        "8",
        "--lr",
        "1e12",
        "--max-bad-steps",
        "2",
        "--out",
        str(tmp_path / "runs"),
        "--quiet",
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: training diverged")


def test_a_nan_metric_is_never_best(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_validate = validation.validate
    calls = []

    def validate(run, model):  # epoch 2 produces a NaN accuracy
        calls.append(1)
        metrics = real_validate(run, model)
        return {**metrics, "val_top1": math.nan} if len(calls) == 2 else metrics

    monkeypatch.setattr(validation, "validate", validate)
    result = train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 3})
    assert result.best_epoch != 2 and math.isfinite(result.best_top1)


def test_early_stopping_stops_after_patience_epochs(class_folder: Path, tiny_train_options: dict) -> None:
    result = train(
        data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 12, "patience": 1, "lr": 3e-3}
    )
    assert result.epochs < 12
    assert result.epochs == result.best_epoch + 1
    assert "early stop" in (result.run_dir / "events.log").read_text()


def test_a_malicious_pickle_is_refused_everywhere_and_never_runs(
    class_folder: Path, tiny_train_options: dict, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    # As a model file: load and predict refuse it.
    model_file = malicious_file(tmp_path / "model.safetensors", marker)
    with pytest.raises(ModelFileError):
        load_model(model_file)
    for name in ("model.pt", "model.pth"):
        with pytest.raises(ModelFileError):
            load_model(malicious_file(tmp_path / name, marker))
    done = foveal_cli("predict", str(model_file), str(model_file))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    # As a training checkpoint: resume refuses it and says why.
    run = train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 1}).run_dir
    for old in list_checkpoints(run / "checkpoints"):
        old.unlink()
    malicious_file(run / "checkpoints" / "state-e0001-s000001.pt", marker)
    with pytest.raises(FovealError, match="no loadable checkpoint.*(Weights only load failed|Unsupported)"):
        train(resume=run, quiet=True)
    assert not marker.exists()


def test_oversized_and_truncated_headers_fail_fast(tmp_path: Path) -> None:
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**40) + b"{}")  # claims a 1 TB JSON header
    lying = tmp_path / "lying.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}'
    lying.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)  # 4 GB promised, 16 B given
    for path in (huge, lying):
        started = time.perf_counter()
        with pytest.raises(ModelFileError):
            load_model(path)
        assert time.perf_counter() - started < 1.0
