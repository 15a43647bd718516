"""The comparison as rows: one per model, for markdown, the terminal and the HTML report."""

from __future__ import annotations

HEADER = [
    "model",
    "top-1",
    "macro F1",
    "parameters",
    "GFLOPs/image",
    "train images/s",
    "passes",
    "latency batch 1 (ms)",
    "peak memory (MB)",
]


def comparison_rows(comparison: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a comparison.json, best top-1 first."""
    rows = []
    for m in sorted(comparison["models"], key=lambda m: -m["top1"]):
        rows.append(
            [
                m["model"],
                f"{m['top1']:.2%}",
                f"{m['macro_f1']:.3f}",
                f"{m['parameters'] / 1e6:.2f}M",
                f"{m['gflops_per_image']:.3f}",
                f"{m['train_images_per_second']:.0f}",
                f"{m['passes']:.1f}",
                f"{m['latency_ms']:.2f}",
                "n/a" if m["peak_memory_mb"] is None else f"{m['peak_memory_mb']:.0f}",
            ]
        )
    return HEADER, rows


def markdown_table(comparison: dict) -> str:
    header, rows = comparison_rows(comparison)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
