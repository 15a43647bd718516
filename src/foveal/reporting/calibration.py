"""Calibration: does a 90%-confident prediction come true 90% of the time?"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15  # Guo et al. 2017's choice; enough bins to see the shape, few enough to fill on 1,000 images


@dataclass
class Calibration:
    """Expected calibration error (L1, equal-width confidence bins) and the reliability diagram's bins."""

    ece: float
    bin_edges: list[float]  # BINS + 1 edges over [0, 1]
    bin_confidence: list[float | None]  # mean confidence of the predictions in each bin (None: empty)
    bin_accuracy: list[float | None]  # share of them that were right
    bin_count: list[int]


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> Calibration:
    """Calibration of logits (N, K) against labels (N,): ECE from torchmetrics, plus per-bin figures
    for the reliability diagram (binned the way torchmetrics bins, by top-1 confidence)."""
    probs = logits.float().softmax(dim=1)
    ece = float(
        multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=bins, norm="l1")
    )
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.bucketize(confidence, edges[1:-1], right=True)  # bin i holds [edges[i], edges[i+1])
    count = torch.bincount(index, minlength=bins)
    conf_sum = torch.zeros(bins).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins).index_add_(0, index, correct)
    mean_conf = [float(c / n) if n else None for c, n in zip(conf_sum, count)]
    mean_acc = [float(a / n) if n else None for a, n in zip(acc_sum, count)]
    return Calibration(ece, edges.tolist(), mean_conf, mean_acc, count.tolist())
