"""Evaluate a saved model on a data set: metrics, confusion matrix, files in an output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from foveal.data.sources import load_evaluation_data
from foveal.evaluation.metrics import ClassificationMetrics, compute_metrics
from foveal.evaluation.plots import plot_confusion_matrix
from foveal.inference import predict_logits
from foveal.io import atomic_write_json
from foveal.runtime import resolve_device
from foveal.saved import load_model, resolve_model_path


@dataclass
class Evaluation:
    metrics: ClassificationMetrics
    data: str  # what was evaluated, e.g. "digits (built-in), held-out split: 360 images"
    model: Path
    skipped: list[tuple[str, str]]


def evaluate_model(
    model_path: str | Path,
    source: str,
    *,
    device: str = "auto",
    batch_size: int = 256,
    out: str | Path | None = None,
    flip: bool | None = None,
) -> Evaluation:
    """Evaluate the saved model at `model_path` on `source`.

    Args:
        source: a built-in name (its held-out split), a data set root (its val/ or test/ folder),
            or a folder of class folders (every image in it).
        out: a folder to write metrics.json and confusion_matrix.png into (None: write nothing).
        flip: average each image's logits with its mirror image's (None: as the model was trained to).
    """
    resolved = resolve_device(device)
    model, info = load_model(model_path, resolved)
    images, description = load_evaluation_data(source, info.classes, info.preprocessing.img_size)
    flip = info.test_time_flip if flip is None else flip
    logits = predict_logits(
        model, images.images, info.preprocessing, device=resolved, batch_size=batch_size, flip=flip
    )
    metrics = compute_metrics(logits, images.labels, info.classes)
    evaluation = Evaluation(metrics, description, resolve_model_path(model_path), images.skipped)
    if out is not None:
        save_evaluation(evaluation, out)
    return evaluation


def save_evaluation(evaluation: Evaluation, out: str | Path) -> None:
    """Write metrics.json (with the skipped files) and confusion_matrix.png into folder `out`."""
    out = Path(out)
    payload = {
        "model": str(evaluation.model),
        "data": evaluation.data,
        **evaluation.metrics.to_dict(),
        "skipped": [{"path": p, "reason": r} for p, r in evaluation.skipped],
    }
    atomic_write_json(out / "metrics.json", payload)
    plot_confusion_matrix(
        evaluation.metrics.confusion, evaluation.metrics.class_names, out / "confusion_matrix.png"
    )
