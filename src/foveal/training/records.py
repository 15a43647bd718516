"""What a run writes besides weights: results.csv, the resolved config, skipped files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from foveal.io import atomic_write_text

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


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """One line per unusable file: path, a tab, the reason."""
    atomic_write_text(path, "".join(f"{p}\t{reason}\n" for p, reason in skipped))


def append_event(run_dir: Path, message: str) -> None:
    """Append a timestamped line to the run's events.log (resumes, skipped steps, early stops)."""
    import datetime

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(run_dir / "events.log", "a") as log:
        log.write(f"{stamp} {message}\n")
