"""Auto-numbered run folders: runs/train, runs/train2, runs/train3, ..."""

from __future__ import annotations

from pathlib import Path


def next_run_dir(out: str | Path, name: str) -> Path:
    """Create and return the first free folder among out/name, out/name2, out/name3, ..."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        candidate = out / (name if number == 1 else f"{name}{number}")
        try:
            candidate.mkdir()  # atomic: two runs started together never share a folder
            return candidate
        except FileExistsError:
            number += 1
