"""Measuring a trained classifier: top-1/top-5, per-class precision/recall/F1, confusion matrix, plots."""

from __future__ import annotations

from foveal.evaluation.metrics import ClassificationMetrics, MetricAccumulator, compute_metrics
from foveal.evaluation.plots import plot_confusion_matrix, plot_training_curves

__all__ = [
    "ClassificationMetrics",
    "MetricAccumulator",
    "compute_metrics",
    "plot_confusion_matrix",
    "plot_training_curves",
]
