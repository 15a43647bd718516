"""A bench record in words: one line on what was measured where, a table, and each backend against eager."""

from __future__ import annotations

from typing import Any

MISSING = "-"


def summary_line(record: dict[str, Any]) -> str:
    """The model, the machine, the threads, the load and the images, in one line."""
    model, machine, images = record["model"], record["machine"], record["images"]
    flags = ", ".join(machine["cpu_flags"]) or "no avx2 or avx512"
    load = record["load_average_before"], record["load_average_after"]
    load_text = f"load {load[0][0]} -> {load[1][0]}" if load[0] and load[1] else "load unknown"
    return (
        f"{model['preset']} ({model['family']}, {model['parameters'] / 1e6:.2f}M parameters, "
        f"{model['img_size']} px, test-time views: {model['test_time_views']}) on {machine['cpu']} "
        f"[{flags}], {record['threads']['torch_intra_op']} threads, {load_text}; "
        f"end to end on {images['files']} files: {images['source']}"
    )


def table(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per backend its batch-1, throughput and end-to-end figures, or its error."""
    batch_size = record["settings"]["batch_size"]
    header = [
        "backend",
        "batch 1 p50 / p90 / p99 ms",
        f"batch {batch_size} images/s",
        "end to end p50 / p90 / p99 ms",
        "top-1 vs eager",
        "setup s",
        "runs",
    ]
    rows = []
    for name, result in record["backends"].items():
        if "batch1_ms" not in result:
            rows.append([name, *[MISSING] * 5, f"not measured: {result['error']}"])
            continue
        rows.append(
            [
                name,
                _percentiles(result["batch1_ms"]),
                f"{result['throughput_images_per_second']:,.0f}",
                _percentiles(result["end_to_end_ms"]),
                f"{result['vs_eager']['top1_agreement']:.1%}",
                f"{result['setup_seconds']:.1f}",
                result["source"],
            ]
        )
    return header, rows


def speedup_lines(record: dict[str, Any]) -> list[str]:
    """e.g. "onnx-fp32 vs eager: batch-1 p50 5.2x faster, batch-64 throughput 1.3x higher, end to end
    p50 2.1x faster"; for compile, whether it pays."""
    batch_size = record["settings"]["batch_size"]
    lines = []
    for name, ratio in record["speedup_vs_eager"].items():
        line = (
            f"{name} vs eager: batch-1 p50 {_times(ratio['batch1_p50'], 'faster', 'slower')}, "
            f"batch-{batch_size} throughput {_times(ratio['throughput'], 'higher', 'lower')}, "
            f"end to end p50 {_times(ratio['end_to_end_p50'], 'faster', 'slower')}"
        )
        if name == "compile":
            pays = ratio["batch1_p50"] > 1 or ratio["throughput"] > 1
            seconds = record["backends"][name]["setup_seconds"]
            line += f" ({'pays' if pays else 'does not pay'} after {seconds:.0f} s of compiling)"
        lines.append(line)
    return lines


def _percentiles(summary: dict[str, float]) -> str:
    return " / ".join(_ms(summary[key]) for key in ("p50", "p90", "p99"))


def _ms(value: float) -> str:
    """Three significant figures or more: 0.0123, 0.412, 5.38, 41.2, 412."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _times(ratio: float, better: str, worse: str) -> str:
    """1.3 -> "1.3x faster"; 0.77 -> "1.3x slower"."""
    return f"{ratio:.1f}x {better}" if ratio >= 1 else f"{1 / ratio:.1f}x {worse}"
