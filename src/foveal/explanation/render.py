"""Pictures of explanations: one panel per image (the image, its heatmap overlay, the top-k labels)
and a contact sheet for many images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from foveal.evaluation.plots import new_figure, save_figure
from foveal.explanation.result import Explanation

CONTACT_SHEET_MAX = 64  # images on one contact sheet; more would be unreadably small


def overlay(ax, image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> None:
    """Draw uint8 `image` (H, W, 3) with `heat` (H, W, values 0..1) over it on `ax`."""
    ax.imshow(image, interpolation="nearest")
    ax.imshow(heat, cmap="inferno", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    ax.set_axis_off()


def _image_title(explanation: Explanation, limit: int = 28) -> str:
    name = Path(explanation.source).name
    return name if len(name) <= limit else name[: limit - 3] + "..."


def render_explanation(explanation: Explanation, path: str | Path) -> Path:
    """The image, the overlay of its map, and a bar chart of its top-k labels, side by side."""
    fig = new_figure((9.0, 3.2))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.2]})
    axes[0].imshow(explanation.image, interpolation="nearest")
    axes[0].set_title(_image_title(explanation), fontsize=9)
    axes[0].set_axis_off()
    overlay(axes[1], explanation.image, explanation.pixel_map)
    axes[1].set_title(f"{explanation.method}: {explanation.target}", fontsize=9)
    labels = explanation.labels[::-1]
    axes[2].barh(range(len(labels)), [p * 100 for p in explanation.probabilities[::-1]], color="#4c72b0")
    axes[2].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[2].set_xlim(0, 100)
    axes[2].set_xlabel("probability (%)", fontsize=8)
    axes[2].tick_params(axis="x", labelsize=8)
    axes[2].set_title("top labels", fontsize=9)
    return save_figure(fig, path)


def render_contact_sheet(explanations: list[Explanation], path: str | Path, columns: int = 8) -> Path:
    """Overlays of up to CONTACT_SHEET_MAX explanations in a grid, each titled with its predicted
    label (and the true one when the images came from class folders and the two differ)."""
    shown = explanations[:CONTACT_SHEET_MAX]
    columns = min(columns, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig = new_figure((1.6 * columns, 1.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, explanation in zip(axes, shown):
        overlay(ax, explanation.image, explanation.pixel_map)
        predicted, true = explanation.labels[0], explanation.true_label
        wrong = true is not None and true != predicted
        title = f"{predicted} (true: {true})" if wrong else predicted
        ax.set_title(title, fontsize=7, color="#b00" if wrong else "black")
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    method = shown[0].method if shown else ""
    fig.suptitle(f"{method} maps", fontsize=10)
    return save_figure(fig, path)


def render_method_comparison(
    images: list[np.ndarray], maps: dict[str, list[np.ndarray]], titles: list[str], path: str | Path
) -> Path:
    """One row per image: the image (titled), then its overlay for each method in `maps`."""
    methods = list(maps)
    rows, columns = len(images), 1 + len(methods)
    fig = new_figure((1.7 * columns, 1.75 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for row, (image, title) in enumerate(zip(images, titles)):
        axes[row][0].imshow(image, interpolation="nearest")
        axes[row][0].set_axis_off()
        axes[row][0].set_title(title, fontsize=7)
        for column, method in enumerate(methods, start=1):
            overlay(axes[row][column], image, maps[method][row])
            if row == 0:
                axes[row][column].set_title(method, fontsize=9)
    return save_figure(fig, path)
