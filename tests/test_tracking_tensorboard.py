"""`--log tensorboard`: real runs read back with TensorBoard's own EventAccumulator; a run that
crashes and resumes shows each step once; a missing package is one line before any folder exists;
runs without --log write what they always wrote."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
from clirun import foveal_cli
from tracked import STEPS_PER_EPOCH, crash_at, events, steps

import foveal

pytest.importorskip("tensorboard")


def test_tensorboard_records_steps_epochs_pictures_and_the_config(
    class_folder: Path, tiny_train_options: dict
) -> None:
    result = foveal.train(data=str(class_folder), **tiny_train_options, log="tensorboard")
    run = result.run_dir
    accumulator = events(run)
    every_step = list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert steps(accumulator, "train/loss") == every_step
    assert steps(accumulator, "train/lr") == every_step
    assert all(math.isfinite(e.value) for e in accumulator.Scalars("train/loss"))
    rows = list(csv.DictReader((run / "results.csv").open()))
    for tag, column in (("val/top1", "val_top1"), ("train/images_per_second", "images_per_second")):
        assert steps(accumulator, tag) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]  # at each epoch's end
        values = [e.value for e in accumulator.Scalars(tag)]
        assert values == pytest.approx([float(r[column]) for r in rows], rel=1e-5)
    assert accumulator.Scalars("final/top1")[0].value == pytest.approx(result.metrics.top1)
    images = accumulator.Tags()["images"]
    assert set(images) == {"final/confusion_matrix", "final/attention"}
    attention = accumulator.Images("final/attention")[0]
    assert attention.width > 100 and attention.height > 100 and attention.step == 2 * STEPS_PER_EPOCH
    config = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"img_size": 16' in config and '"log": [' in config and "foveal-tiny" in config


def test_a_crashed_run_resumed_shows_each_step_once(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints at steps 3 and 5 (the first epoch's end), a crash at step 8: steps 6 and 7 were
    logged past the checkpoint of step 5, and the resumed run logs them again; TensorBoard must show
    them once."""
    options = {
        **tiny_train_options,
        "checkpoint_every_steps": 3,
        "keep_checkpoints": 10,
        "log": ["tensorboard"],
    }
    crash_at(monkeypatch, 8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        foveal.train(data=str(class_folder), **options)
    monkeypatch.undo()
    run = Path(options["out"]) / "train"
    crashed = events(run)
    assert steps(crashed, "train/loss") == list(range(1, 8))  # step 8 crashed
    foveal.train(resume=run, quiet=True)
    resumed = events(run)
    assert steps(resumed, "train/loss") == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert steps(resumed, "val/top1") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per process


def test_a_missing_tensorboard_is_one_line_before_any_folder(
    class_folder: Path, tiny_train_options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    out = Path(tiny_train_options["out"])
    result = foveal_cli(
        "train", str(class_folder), "--out", str(out), "--log", "tensorboard", "--epochs", "1"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --log tensorboard needs the tensorboard package; install it with "
        "`pip install 'foveal[tensorboard]'`."
    ]
    assert not out.exists()


def test_a_run_without_log_writes_no_logger_files(class_folder: Path, tiny_train_options: dict) -> None:
    run = foveal.train(data=str(class_folder), **{**tiny_train_options, "epochs": 1}, quiet=True).run_dir
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.json",
        "confusion_matrix.png",
        "metrics.json",
        "results.csv",
        "results.png",
        "skipped.txt",
        "split.json",
        "weights",
    ]
    header = (run / "results.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,seconds,images_per_second"
