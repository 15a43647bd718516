"""Printing results: rich tables on screen, JSON and CSV for other programs."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: importing it would load torch before every command
    from foveal.predictor.classifier import Prediction
    from foveal.predictor.rejection import Rejection


def print_table(header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    # Piped output is not cut to 80 columns: a file path must survive whole for the reader.
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


def print_predictions(
    predictions: list[Prediction], failed: list[tuple[str, str]], fmt: str, rejection: Rejection | None = None
) -> None:
    """Predictions as a table, JSON (a list of objects) or CSV (`prediction_rows`); with the model's
    `rejection` in force, a table ends with a line on the images it marked unknown."""
    if fmt == "json":
        records = [p.to_dict() for p in predictions] + [{"source": s, "error": r} for s, r in failed]
        print(json.dumps(records, indent=2))
    elif fmt == "csv":
        csv.writer(sys.stdout).writerows(prediction_rows(predictions))
    else:
        rows = [
            [
                p.source,
                f"unknown (nearest: {p.labels[0]})" if p.unknown else p.label,
                f"{p.probabilities[0]:.1%}",
                ", ".join(f"{lab} {pr:.1%}" for lab, pr in zip(p.labels[1:], p.probabilities[1:])),
            ]
            for p in predictions
        ]
        print_table(["image", "label", "probability", "next"], rows)
        unknown = sum(p.unknown for p in predictions)
        if unknown and rejection is not None:
            print(
                f"{unknown} of {len(predictions)} images marked unknown: they look unlike every class "
                f"the model knows ({rejection.describe()}). --no-reject shows the nearest class alone."
            )


def prediction_rows(predictions: list[Prediction]) -> list[list[str]]:
    """A header and one row per image: file_name (absolute), label (the most probable class, also
    for an image marked unknown) and its probability, then label_2, probability_2 ... for the other
    top-k classes, then unknown (0 or 1) and familiarity (empty with rejection off). The first two
    columns make it a table of labels `foveal train` reads (docs/training.md)."""
    ranks = max((len(p.labels) for p in predictions), default=1)
    header = ["file_name", "label", "probability"]
    for rank in range(2, ranks + 1):
        header += [f"label_{rank}", f"probability_{rank}"]
    rows = [header + ["unknown", "familiarity"]]
    for p in predictions:
        ranked = [[label, f"{prob:.6f}"] for label, prob in zip(p.labels, p.probabilities)]
        ranked += [["", ""]] * (ranks - len(ranked))
        familiarity = "" if p.familiarity is None else f"{p.familiarity:.6g}"
        cells = [str(Path(p.source).resolve())] + [cell for pair in ranked for cell in pair]
        rows.append(cells + [str(int(p.unknown)), familiarity])
    return rows
