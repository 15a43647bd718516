"""Which epoch a run keeps and when it stops early (training/keeping.py), on made-up progress."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from torch import nn

from foveal.training import keeping
from foveal.training.keeping import is_kept, keep_if_best, stop_early, stops_early
from foveal.training.state import Progress


def test_without_a_budget_the_best_validation_is_kept_and_never_nan() -> None:
    progress = Progress(best_top1=0.5, best_epoch=1)
    assert is_kept(0.6, progress, time_budget=None)
    assert not is_kept(0.5, progress, time_budget=None)  # as good is not better: the earlier stays
    assert not is_kept(math.nan, Progress(), time_budget=None)


def test_under_a_budget_the_final_epoch_is_kept_whatever_it_scores() -> None:
    assert not is_kept(0.9, Progress(best_top1=0.1, global_step=30, planned_steps=40), time_budget=60.0)
    assert not is_kept(0.9, Progress(global_step=30), time_budget=60.0)  # no plan yet
    spent = Progress(best_top1=0.9, global_step=40, planned_steps=40)
    assert is_kept(0.2, spent, time_budget=60.0)  # worse than an earlier epoch, yet annealed: kept
    assert not is_kept(math.nan, spent, time_budget=60.0)


def test_patience_counts_epochs_since_the_best() -> None:
    assert not stops_early(None, epoch=50, best_epoch=1)
    assert not stops_early(2, epoch=4, best_epoch=3)
    assert stops_early(2, epoch=5, best_epoch=3)


def test_the_kept_model_is_saved_as_best_with_its_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[Path] = []
    monkeypatch.setattr(keeping, "save_model", lambda path, model, info: saved.append(path))
    progress = Progress(epoch=3, best_top1=0.5, best_epoch=1)
    keep_if_best(tmp_path, progress, 0.4, nn.Identity(), None, time_budget=None)
    assert saved == [] and (progress.best_top1, progress.best_epoch) == (0.5, 1)
    keep_if_best(tmp_path, progress, 0.7, nn.Identity(), None, time_budget=None)
    assert saved == [tmp_path / "weights" / "best.safetensors"]
    assert (progress.best_top1, progress.best_epoch) == (0.7, 3)


def test_an_early_stop_is_said_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert not stop_early(tmp_path, Progress(epoch=3, best_epoch=2, best_top1=0.8), 2, quiet=False)
    assert not (tmp_path / "events.log").exists()
    assert stop_early(tmp_path, Progress(epoch=4, best_epoch=2, best_top1=0.8), 2, quiet=False)
    assert "early stop: no better val top-1 for 2 epochs (best 80.00% at epoch 2)" in capsys.readouterr().err
    assert "early stop after epoch 4" in (tmp_path / "events.log").read_text()
