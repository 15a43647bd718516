"""The one interface a training run is recorded through, and what it is told.

The loop calls a `Trackers` (trackers.py) at fixed points, on rank 0 only:

    start(RunStart)        the run folder exists: the resolved config, the run's facts
    step(step, values)     after every optimizer step: {"train/loss", "train/lr"}
    epoch(step, rows)      after an epoch's validation: results.csv's rows so far, the new one last
    checkpointed(step)     the training state of `step` is on disk: what a resume would continue from
    finish(RunEnd)         the kept model evaluated and the report written: final metrics, pictures
    close(status)          always last, also when the run fails or is interrupted

`step` is the optimizer steps taken in all epochs (Progress.global_step), the one x axis of every
figure: per-step and per-epoch values line up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from foveal.config import TrainConfig
from foveal.errors import FovealError

Status = Literal["finished", "failed", "interrupted"]

# results.csv column -> the figure's name in TensorBoard and MLflow ("epoch" is kept as it is)
EPOCH_FIGURES = {
    "epoch": "epoch",
    "train_loss": "train/epoch_loss",
    "train_top1": "train/epoch_top1",
    "val_loss": "val/loss",
    "val_top1": "val/top1",
    "val_top5": "val/top5",
    "lr": "train/epoch_lr",
    "seconds": "train/epoch_seconds",
    "images_per_second": "train/images_per_second",
}


class TrackingUnavailable(FovealError):
    """A logger asked for cannot record: its package is missing, or its server does not answer."""


class TrackingFailed(FovealError):
    """A logger failed mid-run (its server went away): the run goes on without it."""


@dataclass(frozen=True)
class RunStart:
    """What a logger is told when the run folder exists."""

    run_dir: Path
    config: TrainConfig  # the resolved settings
    record: dict[str, Any]  # config.json's contents: settings, model, preprocessing, data, device
    tags: dict[str, str]  # model, data, device, foveal_version
    resumed_at: int | None = None  # a resumed run: the global step of its checkpoint; None: a new run


@dataclass(frozen=True)
class RunEnd:
    """What a logger is told at the end: the kept model on every held-out image."""

    step: int  # the last optimizer step
    metrics: dict[str, float]  # {"final/top1": 0.97, ...}
    pictures: dict[str, Path] = field(default_factory=dict)  # {"confusion_matrix": PNG, "attention": PNG}


class Tracker:
    """One place a run is recorded. Every method records nothing by default; a logger whose
    destination fails raises TrackingFailed, and Trackers drops it with one warning."""

    name = "tracker"
    wants_pictures = False  # whether RunEnd should carry the confusion matrix and attention overlays

    def start(self, run: RunStart) -> None:
        """The run folder exists; a resumed run continues from `run.resumed_at`."""

    def step(self, step: int, values: dict[str, float]) -> None:
        """One optimizer step's figures (finite values only)."""

    def epoch(self, step: int, rows: list[dict[str, Any]]) -> None:
        """An epoch validated: results.csv's rows so far, the new one last."""

    def checkpointed(self, step: int) -> None:
        """The training state after `step` is saved: a crash from here on resumes at `step`."""

    def finish(self, end: RunEnd) -> None:
        """The run's end: final metrics and pictures."""

    def close(self, status: Status) -> None:
        """Last call, whatever happened."""


def epoch_figures(row: dict[str, Any]) -> dict[str, float]:
    """A results.csv row as named figures (EPOCH_FIGURES), without the missing or non-finite."""
    return {
        EPOCH_FIGURES[key]: float(value)
        for key, value in row.items()
        if key in EPOCH_FIGURES and isinstance(value, (int, float)) and math.isfinite(value)
    }


def final_figures(metrics: Any, loss: float) -> dict[str, float]:
    """The kept model's scores (evaluation.metrics.ClassificationMetrics) as named figures."""
    figures = {
        "final/top1": metrics.top1,
        "final/top5": metrics.top5,
        "final/loss": loss,
        "final/macro_precision": metrics.macro_precision,
        "final/macro_recall": metrics.macro_recall,
        "final/macro_f1": metrics.macro_f1,
    }
    return {key: float(value) for key, value in figures.items() if math.isfinite(value)}
