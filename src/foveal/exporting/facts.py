"""What is known about a model beyond its weights: the data it learnt from and its held-out results,
read from the run folder it came from (or from the bundle being exported again)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foveal.errors import FovealError
from foveal.runs import RunRecord

BUNDLE_FORMAT = "foveal.bundle/1"


@dataclass
class RunFacts:
    """What the run that made a model says about it, when the model came from a run folder."""

    data: str | None = None  # the data set's description, e.g. "digits (built-in): 1437 train, 360 val"
    source: str | None = None  # what `foveal train` was given: a built-in name or a folder
    train_images: int | None = None
    val_images: int | None = None
    evaluation: dict[str, Any] | None = None  # the run's metrics.json


def run_facts(given: Path, file: Path) -> RunFacts:
    """Data and evaluation from the run folder the model file sits in (run/weights/x.safetensors) or
    from the bundle being exported again; empty when the model stands alone."""
    for folder in (given, file.parent.parent):
        if not (folder / "config.json").is_file():
            continue
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if config.get("format") == BUNDLE_FORMAT:  # re-exporting a bundle keeps what it said
            training = config.get("training") or {}
            return RunFacts(
                training.get("data"),
                training.get("source"),
                training.get("train_images"),
                training.get("val_images"),
                config.get("evaluation"),
            )
        try:
            record = RunRecord.read(folder)
            metrics = folder / "metrics.json"
            evaluation = json.loads(metrics.read_text()) if metrics.is_file() else None
        except (FovealError, OSError, ValueError):
            continue
        return RunFacts(
            record.config.get("data"),
            (record.config.get("train", {}).get("data") or {}).get("source"),
            record.config.get("train_images"),
            record.config.get("val_images"),
            evaluation,
        )
    return RunFacts()
