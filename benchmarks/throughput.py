"""Training-step throughput and model FLOP utilisation of presets on this machine.

    python benchmarks/throughput.py --models foveal-small,cct-2-3x2,cnn-resnet20 --batch-sizes 64,128
    python benchmarks/throughput.py --quick          # CI: one small model, a few steps

Each row times `foveal.training.train_step` (the one the training loop runs) on random images,
after warm-up steps, and reports the median images/s of several timed windows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from common import CPU_PEAK_GFLOPS, forward_flops, load_average, measured_matmul_gflops, save

import foveal
from foveal.runtime import to_fast_layout
from foveal.training import train_step


def time_steps(
    name: str, batch_size: int, img_size: int, steps: int, windows: int, compile_model: bool, matmul: float
) -> dict:
    torch.manual_seed(0)
    model = to_fast_layout(
        foveal.create_model(name, num_classes=10, img_size=img_size)
    )  # as the loop runs it
    flops = forward_flops(model, img_size)
    runnable = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(batch_size, 3, img_size, img_size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,))
    started = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        train_step(runnable, images, labels, optimizer, criterion, grad_clip=1.0)
    warmup = time.perf_counter() - started
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(steps):
            train_step(runnable, images, labels, optimizer, criterion, grad_clip=1.0)
        rates.append(steps * batch_size / (time.perf_counter() - started))
    rate = statistics.median(rates)
    gflops = rate * 3 * flops / 1e9
    return {
        "model": name,
        "batch_size": batch_size,
        "img_size": img_size,
        "compiled": compile_model,
        "images_per_second": round(rate, 1),
        "warmup_seconds": round(warmup, 1),
        "forward_mflops_per_image": round(flops / 1e6, 2),
        "train_gflops_per_second": round(gflops, 1),
        "mfu_vs_cpu_peak": round(gflops / CPU_PEAK_GFLOPS, 3),
        "mfu_vs_measured_matmul": round(gflops / matmul, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="foveal-small,cct-2-3x2,cnn-resnet20")
    parser.add_argument("--batch-sizes", default="64,128")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts [all cores]")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="throughput")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.models, args.batch_sizes, args.steps, args.windows = "foveal-tiny", "16", 2, 1
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [os.cpu_count() or 1]
    rows, load_before = [], load_average()
    torch.set_num_threads(max(thread_counts))
    matmul = measured_matmul_gflops()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for name in args.models.split(","):
            for batch_size in map(int, args.batch_sizes.split(",")):
                for compiled in (False, True) if args.compile else (False,):
                    row = time_steps(
                        name, batch_size, args.img_size, args.steps, args.windows, compiled, matmul
                    )
                    row["threads"] = threads
                    print(row, flush=True)
                    rows.append(row)
    from pathlib import Path

    save(
        args.name,
        {
            "rows": rows,
            "matmul_gflops_measured": matmul,
            "cpu_peak_gflops_stated": CPU_PEAK_GFLOPS,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        Path(args.out) if args.out else None,
    )


if __name__ == "__main__":
    main()
