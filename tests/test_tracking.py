"""The loggers' one interface: a logger that fails mid-run is dropped with one warning while the
others go on; results.csv rows become named figures; MLflow's long errors become a short why."""

from __future__ import annotations

import math

from foveal.tracking import Tracker, Trackers, TrackingFailed
from foveal.tracking.interface import epoch_figures
from foveal.tracking.mlflow import reason


class Counting(Tracker):
    def __init__(self, name: str, fail_at: int | None = None) -> None:
        self.name, self.fail_at, self.steps = name, fail_at, []

    def step(self, step: int, values: dict[str, float]) -> None:
        if step == self.fail_at:
            raise TrackingFailed("server gone")
        self.steps.append(step)


def test_a_failing_logger_is_dropped_with_one_warning_and_the_others_go_on() -> None:
    warnings: list[str] = []
    failing, healthy = Counting("remote", fail_at=2), Counting("local")
    trackers = Trackers([failing, healthy], warn=warnings.append)
    for step in range(1, 6):
        trackers.step(step, {"train/loss": 1.0})
    assert warnings == ["warning: remote stopped recording this run (server gone); training goes on"]
    assert failing.steps == [1] and healthy.steps == [1, 2, 3, 4, 5]
    assert trackers.trackers == [healthy]


def test_a_results_row_becomes_named_figures_without_the_non_finite() -> None:
    row = {"epoch": 3, "train_loss": 0.5, "val_loss": math.nan, "val_top1": 0.9, "images_per_second": 120.0}
    assert epoch_figures(row) == {
        "epoch": 3.0,
        "train/epoch_loss": 0.5,
        "val/top1": 0.9,
        "train/images_per_second": 120.0,
    }


def test_mlflow_errors_become_a_short_reason() -> None:
    refused = (
        "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /api (Caused by "
        "NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=1): Failed to establish a new "
        'connection: [Errno 111] Connection refused"))'
    )
    hung = "(Caused by ReadTimeoutError(\"HTTPConnectionPool(host='h'): Read timed out. (...)\"))"
    assert reason(Exception(refused)) == "Connection refused"
    assert reason(Exception(hung)) == "Read timed out"
    assert reason(Exception("x" * 300)) == "x" * 197 + "..."
