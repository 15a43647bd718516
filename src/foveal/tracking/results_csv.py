"""results.csv, one row per epoch: the logger every run has."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from foveal.io import atomic_write_text
from foveal.tracking.interface import RunStart, Tracker

RESULT_COLUMNS = [
    "epoch",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "seconds",
    "images_per_second",
]


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite results.csv (one row per epoch) atomically, so a crash never truncates it."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


class ResultsCsv(Tracker):
    """RUN/results.csv, rewritten whole after each epoch (a resumed run's rows come back with its
    checkpoint, so the file never holds an epoch twice). A failure to write it stops the run, as
    any failure to write the run folder does: it is not a TrackingFailed."""

    name = "results.csv"

    def start(self, run: RunStart) -> None:
        self.path = run.run_dir / "results.csv"

    def epoch(self, step: int, rows: list[dict[str, Any]]) -> None:
        write_results(self.path, rows)
