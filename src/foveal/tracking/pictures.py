"""The end's pictures for the loggers: the confusion matrix the final evaluation drew, and a sheet
of attention overlays drawn by `foveal explain`'s own code."""

from __future__ import annotations

from pathlib import Path

from foveal.data.imageset import ImageSet
from foveal.explanation.render import render_contact_sheet
from foveal.explanation.workflow import explain_images
from foveal.predictor.classifier import load

OVERLAY_IMAGES = 16  # held-out images on the sheet, evenly spaced: two rows of eight


def end_pictures(
    run_dir: Path, model_file: Path, val: ImageSet, device: str, folder: Path
) -> dict[str, Path]:
    """{"confusion_matrix": RUN/confusion_matrix.png, "attention": folder/attention.png}: the saved
    model's maps (its default method) over OVERLAY_IMAGES held-out images, titled with the predicted
    label (and the true one where they differ).

    Args:
        run_dir: the run folder; its confusion_matrix.png is written by the final evaluation.
        model_file: the kept model (weights/best.safetensors).
        val: the held-out images, uint8 (N, 3, S, S) with labels.
        device: where to run the model ("cpu", "cuda:0").
        folder: where to write attention.png.
    """
    classifier = load(model_file, device)
    shown = val.evenly_spaced(OVERLAY_IMAGES)
    sources = [(shown.paths[i] if shown.paths else "") or f"image {i}" for i in range(len(shown))]
    true_labels = [classifier.classes[int(label)] for label in shown.labels]
    explanations = explain_images(classifier, shown.images, sources, top_k=1, true_labels=true_labels)
    return {
        "confusion_matrix": run_dir / "confusion_matrix.png",
        "attention": render_contact_sheet(explanations, folder / "attention.png"),
    }
