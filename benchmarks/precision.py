"""fp32 against bf16 autocast on this machine: a large matmul, and training steps of real models.

    python benchmarks/precision.py --models hybrid-airbench-half,cnn-airbench-half
    python benchmarks/precision.py --quick          # CI: one small model, few steps

What `--precision auto` decides from the CPU's flags (foveal/runtime.py) is checked here by
measurement: the two precisions run interleaved (fp32, bf16, fp32, bf16, ...) in one process, each
model's `train_step` at `--batch-size` on random images, median over the timed steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import load_average, save

import foveal
from foveal.runtime import autocast_for, matmul_gflops, resolve_precision, to_fast_layout
from foveal.training import train_step


def step_seconds(model_name: str, precision: str, batch_size: int, steps: int) -> list[float]:
    """Seconds of each of `steps` train steps (after 2 untimed) of a fresh `model_name`."""
    torch.manual_seed(0)
    model = to_fast_layout(foveal.create_model(model_name, num_classes=10, img_size=32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    images = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch_size,))
    autocast = autocast_for(torch.device("cpu"), precision)
    criterion = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        train_step(model, images, targets, optimizer, criterion, autocast=autocast)
        times.append(time.perf_counter() - started)
    return times[2:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="hybrid-airbench-half,cnn-airbench-half")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model and precision and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    models = ["hybrid-nano"] if args.quick else args.models.split(",")
    batch_size, steps, rounds = (16, 2, 1) if args.quick else (args.batch_size, args.steps, args.rounds)
    load_before = load_average()
    cpu = torch.device("cpu")
    matmul = {
        name: matmul_gflops(cpu, 1024, 7, dtype)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    rows = []
    for model in models:
        seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(rounds):
            for precision in seconds:  # interleaved: a drifting machine load hits both alike
                seconds[precision] += step_seconds(model, precision, batch_size, steps)
        rate = {p: batch_size / statistics.median(s) for p, s in seconds.items()}
        rows.append(
            {
                "model": model,
                "fp32_images_per_second": round(rate["fp32"], 1),
                "bf16_images_per_second": round(rate["bf16"], 1),
                "bf16_speedup": round(rate["bf16"] / rate["fp32"], 2),
            }
        )
    record = {
        "quick": args.quick,
        "batch_size": batch_size,
        "auto_precision": resolve_precision(torch.device("cpu")),
        "matmul_1024_gflops": {k: round(v, 1) for k, v in matmul.items()},
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    save(args.name or ("quick_precision" if args.quick else "precision"), record, args.out)
    print(
        f"\nmatmul 1024: fp32 {matmul['fp32']:.0f}, bf16 {matmul['bf16']:.0f} GFLOP/s; "
        f"--precision auto picks {record['auto_precision']}"
    )
    print("| model | fp32 images/s | bf16 images/s | bf16 speed-up |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['fp32_images_per_second']:,.0f} | "
            f"{row['bf16_images_per_second']:,.0f} | {row['bf16_speedup']:.2f}x |"
        )


if __name__ == "__main__":
    main()
