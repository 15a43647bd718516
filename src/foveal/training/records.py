"""What a run writes besides weights and results.csv (a logger: tracking/results_csv.py): skipped
files, events."""

from __future__ import annotations

from pathlib import Path

from foveal.io import atomic_write_text


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """One line per unusable file: path, a tab, the reason."""
    atomic_write_text(path, "".join(f"{p}\t{reason}\n" for p, reason in skipped))


def append_event(run_dir: Path, message: str) -> None:
    """Append a timestamped line to the run's events.log (resumes, skipped steps, early stops)."""
    import datetime

    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    with open(run_dir / "events.log", "a") as log:
        log.write(f"{stamp} {message}\n")
