"""Where a run is recorded: results.csv always, TensorBoard and MLflow when asked (--log).

trackers = open_trackers(config.tracking)   # before the run folder: a missing package or a server
                                            # that does not answer is one line, TrackingUnavailable
trackers.start(RunStart(...))               # then the loop's calls, on rank 0 (interface.py)
"""

from __future__ import annotations

from pathlib import Path

import torch

from foveal import __version__
from foveal.config import TrackingConfig
from foveal.tracking.interface import (
    RunEnd,
    RunStart,
    Tracker,
    TrackingFailed,
    TrackingUnavailable,
    final_figures,
)
from foveal.tracking.mlflow import MlflowTracker
from foveal.tracking.results_csv import RESULT_COLUMNS, ResultsCsv, write_results
from foveal.tracking.tensorboard import TensorBoardTracker
from foveal.tracking.trackers import Trackers


def open_trackers(settings: TrackingConfig, *, resumed: Path | None = None) -> Trackers:
    """results.csv and the loggers `settings.log` names, each checked (installed, its server
    answering) before the run starts.

    Args:
        settings: the run's tracking settings.
        resumed: the run folder of a resumed run (MLflow continues the run it recorded there).

    Raises:
        TrackingUnavailable: a logger's package is missing or its tracking server does not answer.
    """
    trackers: list[Tracker] = [ResultsCsv()]
    for name in dict.fromkeys(settings.log):  # each once, in the order given
        trackers.append(TensorBoardTracker() if name == "tensorboard" else MlflowTracker(settings, resumed))
    return Trackers(trackers)


def run_tags(model: str, data: str, device: torch.device) -> dict[str, str]:
    """The tags a logger files the run under: model, data, device (the GPU's name on CUDA) and
    Foveal's version."""
    where = str(device)
    if device.type == "cuda":
        where = f"{where} ({torch.cuda.get_device_name(device)})"
    return {"model": model, "data": data, "device": where, "foveal_version": __version__}


__all__ = [
    "RESULT_COLUMNS",
    "RunEnd",
    "RunStart",
    "Tracker",
    "Trackers",
    "TrackingFailed",
    "TrackingUnavailable",
    "final_figures",
    "open_trackers",
    "run_tags",
    "write_results",
]
