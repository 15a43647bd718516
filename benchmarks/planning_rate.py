"""How steady the budget ladder's yardstick is: the old one (a 1,024-square fp32 matmul) against the
new one (a second of real training steps, training/speed.py), measured in turns in one process.

    python benchmarks/planning_rate.py --repeats 8 [--precision fp32]

Each turn measures the matmul rate as the ladder used to (runtime.matmul_gflops, 1,024-square, median
of 5), the probe as the ladder now runs it (recipe.planning_gflops for a 30-minute budget), and the
probe at the ladder's batch (256) and on the full-width rung, which say how far the probe's batch and
model stand from what the run trains. The spread (largest over smallest reading) is what moved the
ladder's choice between runs; the estimated passes are for CIFAR-10's 50,000 images.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import load_average, save

from foveal.runtime import matmul_gflops, resolve_precision
from foveal.training import speed
from foveal.training.recipe import (
    BUDGET_LADDER,
    affordable_gflops_per_image,
    budget_choices,
    planning_gflops,
    train_gflops_per_image,
)

CPU = torch.device("cpu")
IMAGES, CLASSES, SIZE = 50_000, 10, 32


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "spread": round(max(values) / min(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--name", default="planning_rate")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()
    precision = resolve_precision(CPU, args.precision)
    half, full = BUDGET_LADDER[0].model, BUDGET_LADDER[-1].model
    load_before = load_average()
    readings: dict[str, list[float]] = {k: [] for k in ("matmul", "probe", "probe_batch256", "full_batch64")}
    probe_seconds = []
    for turn in range(args.repeats):
        readings["matmul"].append(matmul_gflops(CPU, size=1024))
        started = time.perf_counter()
        readings["probe"].append(planning_gflops(1800, CPU, precision))
        probe_seconds.append(time.perf_counter() - started)
        at_256 = speed.measure_training_speed(half, SIZE, CLASSES, CPU, precision, batch=256)
        readings["probe_batch256"].append(
            at_256.images_per_second * train_gflops_per_image(half, SIZE, CLASSES)
        )
        on_full = speed.measure_training_speed(full, SIZE, CLASSES, CPU, precision)
        readings["full_batch64"].append(
            on_full.images_per_second * train_gflops_per_image(full, SIZE, CLASSES)
        )
        print(f"turn {turn + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in readings.items()), flush=True)
    full_gflops = train_gflops_per_image(full, SIZE, CLASSES)
    passes = {  # the full-width rung's estimated passes from the median probe reading
        f"{minutes} min": round(
            affordable_gflops_per_image(60 * minutes, IMAGES, statistics.median(readings["probe"]))
            / full_gflops,
            2,
        )
        for minutes in (10, 30, 60)
    }
    ladder = {  # what the ladder takes at the median reading, and at the slowest and fastest
        f"{minutes} min": {
            reading: budget_choices(
                60 * minutes, IMAGES, CPU, SIZE, CLASSES, training_gflops=pick(readings["probe"])
            )["model"]
            for reading, pick in (("median", statistics.median), ("slowest", min), ("fastest", max))
        }
        for minutes in (10, 30, 60)
    }
    save(
        args.name,
        {
            "precision": precision,
            "repeats": args.repeats,
            "gflops": {k: summary(v) for k, v in readings.items()},  # training GFLOP/s, matmul's fp32
            "readings": {k: [round(x, 1) for x in v] for k, v in readings.items()},
            "probe_seconds_median": round(statistics.median(probe_seconds), 2),
            "full_width_estimated_passes": passes,
            "ladder_choice": ladder,
            "half_images_per_second_probe": round(
                statistics.median(readings["probe"]) / train_gflops_per_image(half, SIZE, CLASSES), 1
            ),
            "full_images_per_second_probe": round(
                statistics.median(readings["full_batch64"]) / full_gflops, 1
            ),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
    )


if __name__ == "__main__":
    main()
