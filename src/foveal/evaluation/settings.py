"""What `foveal evaluate` is told; its options are these fields (cli/options.py). Light to import."""

from __future__ import annotations

from dataclasses import dataclass

from foveal.config import option
from foveal.predictor.settings import InferenceSettings


@dataclass(frozen=True)
class EvaluateSettings(InferenceSettings):
    """How a model is measured on labelled images, and where its figures go."""

    as_json: bool = option(False, "Print the metrics as JSON.", flag="--json", negatable=False)
    tta_flip: bool | None = option(None, "Average each image with its mirror [default: as trained].")
    out: str | None = option(
        None,
        "Output folder for metrics.json and confusion_matrix.png [default: runs/evaluate, numbered].",
        summary="Output folder [default: runs/evaluate, numbered].",
    )
