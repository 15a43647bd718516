"""The report's pictures that evaluation does not already draw: class counts, the reliability
diagram, the familiarity histogram, the worst mistakes with where the model looked, and the
faithfulness curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from foveal.evaluation.plots import MAX_TICK_LABELS, new_figure, save_figure
from foveal.explanation.faithfulness import CurveScores
from foveal.explanation.render import overlay
from foveal.predictor.rejection import Rejection
from foveal.reporting.calibration import Calibration


def plot_class_counts(classes: list[str], train: list[int], val: list[int], path: str | Path) -> Path:
    """Side-by-side bars of the training and held-out images per class; past MAX_TICK_LABELS classes
    only every n-th is named."""
    # Inches: capped as the confusion matrix's are, so that a thousand classes draw in about the
    # time ten do (the report's time under a budget is planned as the same on any data).
    fig = new_figure((min(max(5.0, 0.45 * len(classes) + 2), 22.0), 3.4))
    ax = fig.subplots()
    x = np.arange(len(classes))
    ax.bar(x - 0.2, train, width=0.4, label="train", color="#4c72b0")
    ax.bar(x + 0.2, val, width=0.4, label="held out", color="#dd8452")
    named = x[:: math.ceil(len(classes) / MAX_TICK_LABELS)]
    ax.set_xticks(
        named,
        [c if len(c) <= 14 else c[:11] + "..." for c in (classes[i] for i in named)],
        rotation=45,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.set_ylim(0, max([*train, *val, 1]) * 1.2)  # headroom, so the legend never hides a bar
    ax.legend(fontsize=8, ncols=2, loc="upper right")
    return save_figure(fig, path)


def plot_reliability(cal: Calibration, path: str | Path) -> Path:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal), with the
    share of predictions in each bin underneath."""
    fig = new_figure((4.6, 5.2))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    edges = np.array(cal.bin_edges)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    accuracy = np.array([np.nan if a is None else a for a in cal.bin_accuracy])
    confidence = np.array([np.nan if c is None else c for c in cal.bin_confidence])
    top.bar(centres, np.nan_to_num(accuracy), width=width * 0.95, color="#4c72b0", label="accuracy")
    # Each bin's mean confidence: above its bar is over-confidence, below it under-confidence.
    top.plot(centres, confidence, "D", color="#dd8452", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability (ECE {cal.ece:.1%})")
    top.legend(fontsize=8, loc="upper left")
    counts = np.array(cal.bin_count)
    bottom.bar(centres, counts / max(1, counts.sum()), width=width * 0.95, color="#888")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence of the top-1 prediction")
    bottom.set_ylabel("share")
    return save_figure(fig, path)


def plot_familiarity(correct: np.ndarray, wrong: np.ndarray, rejection: Rejection, path: str | Path) -> Path:
    """Histogram of the familiarity score on the held-out images, right and wrong predictions
    stacked, with the threshold below which an image is called unknown."""
    fig = new_figure((5.6, 3.4))
    ax = fig.subplots()
    both = np.concatenate([correct, wrong])
    bins = np.linspace(both.min(), both.max(), 41) if both.size and both.max() > both.min() else 10
    ax.hist([correct, wrong], bins=bins, stacked=True, color=["#4c72b0", "#dd8452"], label=["right", "wrong"])
    ax.axvline(rejection.threshold, color="k", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel(f"familiarity ({rejection.score}); below the threshold: unknown")
    ax.set_ylabel("held-out images")
    ax.set_title("How familiar the held-out images look to the model")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_mistakes(
    images: list[np.ndarray], maps: list[np.ndarray], titles: list[str], path: str | Path, columns: int = 6
) -> Path:
    """The worst mistakes as overlays of where the model looked, each titled predicted / true."""
    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    fig = new_figure((2.0 * columns, 2.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, image, heat, title in zip(axes, images, maps, titles):
        overlay(ax, image, heat)
        ax.set_title(title, fontsize=7)
    for ax in axes[len(images) :]:
        ax.set_axis_off()
    return save_figure(fig, path)


def plot_faithfulness(scores: list[CurveScores], path: str | Path) -> Path:
    """Mean deletion and insertion curves of each explanation method, random maps dashed."""
    fig = new_figure((8.0, 3.4))
    deletion_ax, insertion_ax = fig.subplots(1, 2, sharey=True)
    for score in scores:
        style = {"color": "#888", "linestyle": "--"} if score.method == "random" else {}
        for ax, curve in ((deletion_ax, score.deletion_curve), (insertion_ax, score.insertion_curve)):
            ax.plot(np.linspace(0, 1, len(curve)), curve, label=score.method, **style)
    deletion_ax.set_title(
        "Deletion: most relevant pixels removed first\n(faster fall: more faithful)", fontsize=9
    )
    insertion_ax.set_title(
        "Insertion: most relevant pixels shown first\n(faster rise: more faithful)", fontsize=9
    )
    deletion_ax.set_ylabel("probability of the explained class")
    for ax in (deletion_ax, insertion_ax):
        ax.set_xlabel("share of pixels")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    insertion_ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
