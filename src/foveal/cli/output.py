"""Printing results: rich tables on screen, JSON and CSV for other programs."""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: importing it would load torch before every command
    from foveal.classifier import Prediction


def print_table(header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    # Piped output is not cut to 80 columns: a file path must survive whole for the reader.
    Console(width=None if sys.stdout.isatty() else 1000).print(table)


def print_predictions(predictions: list[Prediction], failed: list[tuple[str, str]], fmt: str) -> None:
    """Predictions as a table, JSON (a list of objects) or CSV (one row per image and rank)."""
    if fmt == "json":
        records = [p.to_dict() for p in predictions] + [{"source": s, "error": r} for s, r in failed]
        print(json.dumps(records, indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["source", "rank", "label", "probability"])
        for p in predictions:
            for rank, (label, prob) in enumerate(zip(p.labels, p.probabilities), start=1):
                writer.writerow([p.source, rank, label, f"{prob:.6f}"])
    else:
        rows = [
            [
                p.source,
                p.label,
                f"{p.probabilities[0]:.1%}",
                ", ".join(f"{lab} {pr:.1%}" for lab, pr in zip(p.labels[1:], p.probabilities[1:])),
            ]
            for p in predictions
        ]
        print_table(["image", "label", "probability", "next"], rows)
