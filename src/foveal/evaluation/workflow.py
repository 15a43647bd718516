"""The one evaluation: a model on labelled images -> metrics, loss and logits, in one layout.

Per-epoch validation, the final evaluation of a run, `foveal evaluate`, the report, `compare` and
the benchmarks all call `evaluate`, and every metrics.json is `Evaluation.to_dict()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.data.imageset import ImageSet
from foveal.data.preprocess import Preprocessing
from foveal.evaluation.metrics import ClassificationMetrics, compute_metrics
from foveal.evaluation.plots import plot_confusion_matrix
from foveal.io import atomic_write_json
from foveal.predictor.inference import Outputs, mean_loss, predict_outputs
from foveal.predictor.rejection import RejectionCount


@dataclass
class Evaluation:
    """A model measured on a labelled set. Scores are NaN when the model's logits are not finite."""

    metrics: ClassificationMetrics
    loss: float  # mean cross-entropy, no label smoothing
    data: str  # what was evaluated, e.g. "digits (built-in), held-out split: 360 images"
    model: Path | None = None  # the saved model file, when one was evaluated
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unusable files
    epoch: int | None = None  # the training epoch of the weights, when a run evaluates its own
    logits: torch.Tensor = field(default=None, repr=False)  # (N, K) float32 on the CPU
    rejection: RejectionCount | None = None  # how many the model's open-set threshold rejects
    pooled: torch.Tensor | None = field(default=None, repr=False)  # (N, C) float32: the features

    @property
    def outputs(self) -> Outputs:
        """The logits and pooled features, as the inference path gave them."""
        return Outputs(self.logits, self.pooled)

    def to_dict(self) -> dict[str, Any]:
        """The layout of every metrics.json (JSON-ready)."""
        return {
            "model": None if self.model is None else str(self.model),
            "data": self.data,
            "epoch": self.epoch,
            "loss": self.loss,
            **self.metrics.to_dict(),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "rejection": None if self.rejection is None else self.rejection.to_dict(),
        }


def evaluate(
    model: nn.Module,
    images: ImageSet,
    preprocessing: Preprocessing,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    data: str = "",
    model_file: Path | None = None,
    epoch: int | None = None,
) -> Evaluation:
    """Evaluate `model` on `images` through the one inference path (`preprocessing`'s test-time views).

    NaN-safe: a model whose logits are not finite gets NaN scores instead of an error, so a diverged
    epoch is recorded and never selected.
    """
    outputs = predict_outputs(model, images.images, preprocessing, device=device, batch_size=batch_size)
    logits = outputs.logits
    if torch.isfinite(logits).all():
        metrics = compute_metrics(logits, images.labels, images.classes)
        loss = mean_loss(logits, images.labels)
    else:
        metrics, loss = ClassificationMetrics.undefined(images.classes, len(images)), float("nan")
    return Evaluation(
        metrics, loss, data, model_file, list(images.skipped), epoch, logits, pooled=outputs.pooled
    )


def save_evaluation(evaluation: Evaluation, out: str | Path) -> dict[str, Path]:
    """Write metrics.json (with the skipped files) and confusion_matrix.png into folder `out`.
    metrics.json is written last: in a run folder its presence marks the run as finished.

    Returns:
        The files written, by what they hold: {"metrics": ..., "confusion_matrix": ...}.
    """
    out = Path(out)
    files = {"metrics": out / "metrics.json", "confusion_matrix": out / "confusion_matrix.png"}
    plot_confusion_matrix(
        evaluation.metrics.confusion, evaluation.metrics.class_names, files["confusion_matrix"]
    )
    atomic_write_json(files["metrics"], evaluation.to_dict())
    return files
