"""Pictures of a model's results: a confusion-matrix heatmap and training curves.

Matplotlib is imported inside the functions (importing foveal stays fast) and only `Figure` objects with
an Agg canvas are used, so nothing touches pyplot's global state or needs a display. PNGs are written
to a temporary file next to the target and moved into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import math
import os
import uuid
from pathlib import Path
from typing import Any

from foveal.errors import FovealError
from foveal.evaluation.metrics import MAX_TOP_K

DPI = 120
ANNOTATE_MAX_CLASSES = 30  # beyond this, cell numbers would be too small to read
MAX_TICK_LABELS = 120  # beyond this, tick labels would overlap, so only every n-th is shown
_TICK_LABEL_CAP = 24  # characters; longer class names are shortened on the axes
_CURVE_COLUMNS = ("train_loss", "val_loss", "val_top1", "val_top5", "lr", "seconds")


def plot_confusion_matrix(
    confusion: list[list[int]],
    class_names: list[str],
    path: str | Path,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Draw the confusion matrix as an annotated heatmap and save it as a PNG.

    Args:
        confusion: K x K counts; rows are true classes, columns predicted classes.
        class_names: K names, in the same order.
        path: where to write the PNG (parent folders are created).
        normalize: colour each row by the fraction of that true class (so rare classes are as visible as
            common ones); if False, colour by raw count. Cells always show the raw counts.
        title: figure title.

    Returns:
        The path written.
    """
    import numpy as np

    counts = _check_confusion(confusion, class_names)
    num_classes = counts.shape[0]
    if normalize:
        row_totals = counts.sum(axis=1, keepdims=True)
        # A class with no true samples gets an all-zero row rather than NaN.
        colours = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
        vmax = 1.0
    else:
        colours = counts.astype(float)
        vmax = max(float(colours.max()), 1.0)

    # Inches: about a fifth of an inch per class, capped so 100+ classes still give a PNG that opens quickly.
    side = min(max(6.0, 2.5 + 0.2 * num_classes), 22.0)
    # No layout engine: with 100+ tick labels it costs more than the drawing, and the tight bounding box
    # used when saving already fits the canvas around the labels.
    fig = new_figure((side + 1.0, side), layout=None)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    colourbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colourbar.set_label("fraction of true class" if normalize else "count")

    _label_axes(ax, class_names, title)
    if num_classes <= ANNOTATE_MAX_CLASSES:
        _annotate_cells(ax, counts, colours / vmax)
    return save_figure(fig, path)


def plot_training_curves(results_csv: str | Path, path: str | Path, *, top_k: int | None = MAX_TOP_K) -> Path:
    """Draw training progress from a results.csv as a 2x2 grid and save it as a PNG.

    Panels: train/val loss; val top-1 and top-k accuracy in %; learning rate; seconds per epoch. Any
    column may be missing, and any cell empty: each series is drawn from the rows that have it.

    Args:
        results_csv: the CSV the trainer writes (columns such as epoch, train_loss, val_loss, val_top1,
            val_top5, lr, seconds).
        path: where to write the PNG (parent folders are created).
        top_k: the k the val_top5 column was measured with (`ClassificationMetrics.top_k`), or None
            to draw no top-k curve (`shows_top_k`: a 2-class run's would repeat top-1).

    Returns:
        The path written.
    """
    epochs, series = _read_results(Path(results_csv))
    fig = new_figure((12.0, 8.0))
    axes = fig.subplots(2, 2)
    fig.suptitle(f"Training curves ({len(epochs)} epoch{'s' if len(epochs) != 1 else ''})")

    accuracy = {name: _as_percent(series[name]) for name in ("val_top1", "val_top5")}
    losses = {"train": series["train_loss"], "val": series["val_loss"]}
    _draw_panel(axes[0][0], epochs, losses, "Loss", "loss")
    _draw_panel(
        axes[0][1],
        epochs,
        {"val top-1": accuracy["val_top1"], **({f"val top-{top_k}": accuracy["val_top5"]} if top_k else {})},
        "Validation accuracy",
        "accuracy (%)",
    )
    _draw_panel(axes[1][0], epochs, {"lr": series["lr"]}, "Learning rate", "learning rate")
    _draw_panel(axes[1][1], epochs, {"seconds": series["seconds"]}, "Time per epoch", "seconds")
    _use_log_scale_if_wide(axes[1][0], series["lr"])
    return save_figure(fig, path)


# --- confusion-matrix helpers -------------------------------------------------------------------------


def _check_confusion(confusion: list[list[int]], class_names: list[str]) -> Any:
    """Validate the matrix against the names and return it as a numpy int array."""
    import numpy as np

    num_classes = len(class_names)
    if num_classes == 0:
        raise FovealError("expected at least one class name for the confusion matrix, got none")
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape != (num_classes, num_classes):
        raise FovealError(
            f"expected a {num_classes} x {num_classes} confusion matrix (one row and column per class), "
            f"got shape {counts.shape}"
        )
    if (counts < 0).any():
        raise FovealError("expected non-negative counts in the confusion matrix, got a negative value")
    return counts.astype(np.int64)


def _label_axes(ax: Any, class_names: list[str], title: str) -> None:
    """Put class names on both axes, rotated on x so long names do not overlap."""
    num_classes = len(class_names)
    many = num_classes > ANNOTATE_MAX_CLASSES
    # Past ~MAX_TICK_LABELS names the labels would overlap whatever the font, so only every n-th is shown.
    step = math.ceil(num_classes / MAX_TICK_LABELS)
    ticks = list(range(0, num_classes, step))
    labels = [_shorten(str(class_names[i]), _TICK_LABEL_CAP) for i in ticks]
    font_size = 7 if many else 9
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    # Vertical labels need the least room when classes are packed tightly; 45 degrees reads better otherwise.
    rotation, valign = (90, "center") if many else (45, "baseline")
    ax.set_xticklabels(
        labels, rotation=rotation, ha="right", va=valign, rotation_mode="anchor", fontsize=font_size
    )
    ax.set_yticklabels(labels, fontsize=font_size)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)


def _annotate_cells(ax: Any, counts: Any, shade: Any) -> None:
    """Write each count in its cell, white on dark cells so it stays readable."""
    num_classes = counts.shape[0]
    font_size = 10 if num_classes <= 10 else 8 if num_classes <= 20 else 6
    for row in range(num_classes):
        for col in range(num_classes):
            colour = "white" if shade[row, col] > 0.5 else "black"
            ax.text(
                col,
                row,
                str(int(counts[row, col])),
                ha="center",
                va="center",
                color=colour,
                fontsize=font_size,
            )


def _shorten(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, marking the cut with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- training-curve helpers ---------------------------------------------------------------------------


def _read_results(results_csv: Path) -> tuple[list[float], dict[str, list[float | None]]]:
    """Read results.csv into an epoch axis and one value list per known column (None where empty).

    Args:
        results_csv: path of the CSV.

    Returns:
        (epochs, {column: values}); a missing column becomes all None.
    """
    if not results_csv.is_file():
        raise FovealError(f"expected a training results CSV at {results_csv}, got no such file")
    with results_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise FovealError(f"expected at least one epoch row in {results_csv}, got none")
    epochs = [_parse(row.get("epoch")) for row in rows]
    # Fall back to row numbers when the epoch column is absent or partly empty, so every row has an x.
    x = [e if e is not None else float(i + 1) for i, e in enumerate(epochs)]
    series = {name: [_parse(row.get(name)) for row in rows] for name in _CURVE_COLUMNS}
    return x, series


def _parse(cell: str | None) -> float | None:
    """Parse one CSV cell as a finite float; empty, missing or junk cells become None."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _as_percent(values: list[float | None]) -> list[float | None]:
    """Scale accuracy to %; the trainer writes fractions, but values already above 1 are kept as %."""
    present = [v for v in values if v is not None]
    if not present or max(present) > 1.0:
        return values
    return [v * 100.0 if v is not None else None for v in values]


def _draw_panel(
    ax: Any, epochs: list[float], lines: dict[str, list[float | None]], title: str, ylabel: str
) -> None:
    """Plot each series against epoch from the rows that have a value, or say there is no data."""
    from matplotlib.ticker import MaxNLocator

    # Same marker size for every series, from the epoch count, so a series with gaps does not look bolder.
    marker_size = 5 if len(epochs) <= 30 else 2
    drawn = 0
    for label, values in lines.items():
        points = [(x, y) for x, y in zip(epochs, values, strict=True) if y is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        # Markers make a one-epoch run (a single point) visible; they shrink as epochs pile up.
        ax.plot(xs, ys, marker="o", markersize=marker_size, label=label)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 0.98" ticks on short runs
    if max(epochs) - min(epochs) < 2:
        # One or two epochs: pad the x range, or the integer locator has no whole numbers to show.
        ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if drawn == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
    elif len(lines) > 1:
        ax.legend()


def _use_log_scale_if_wide(ax: Any, values: list[float | None]) -> None:
    """Switch to a log y-axis when a positive series spans more than 20x (e.g. warmup plus decay)."""
    present = [v for v in values if v is not None]
    if present and min(present) > 0 and max(present) / min(present) > 20:
        ax.set_yscale("log")


# --- shared helpers -----------------------------------------------------------------------------------


def new_figure(size: tuple[float, float], layout: str | None = "constrained") -> Any:
    """Create a Figure bound to the Agg canvas, independent of pyplot.

    Args:
        size: (width, height) in inches.
        layout: matplotlib layout engine name, or None for none.

    Returns:
        The figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save `fig` as a PNG via a temporary file in the same folder, then move it into place.

    Args:
        fig: the figure to save.
        path: the final file path.

    Returns:
        The final path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name rather than mkstemp: savefig then creates the file itself with the usual permissions
    # (mkstemp's files are owner-only, and os.replace would carry that onto the final PNG).
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # bbox_inches="tight" grows or trims the saved canvas to hold every label; it also covers the
        # layout engine's misplaced labels around a fixed-aspect heatmap.
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
        os.replace(tmp, target)  # atomic on the same file system
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
