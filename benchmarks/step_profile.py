"""Where a training step's time goes: the operators of `train_step`, as the loop runs it.

    python benchmarks/step_profile.py --models hybrid-mini,cnn-airbench-half --batch-size 256
    python benchmarks/step_profile.py --quick        # CI: one small model, two steps

Each model's step (channels-last layout, bf16 autocast where the CPU has native bf16, AdamW) runs a
few times untimed, then `--steps` times under torch.profiler; the table lists the operators with
the most self CPU time, grouped into convolution, matmul, attention, norm and other, with the
images/s of the profiled steps (the profiler adds a little overhead to each).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch
from common import load_average, save
from torch.profiler import ProfilerActivity, profile

import foveal
from foveal.runtime import autocast_for, to_fast_layout
from foveal.training import train_step

# Operator name fragments -> the kind of work (first match wins), to compare models by kind.
KINDS = (
    ("attention", ("scaled_dot_product", "softmax", "_efficient_attention", "flash_attention")),
    ("convolution", ("convolution", "conv2d", "mkldnn_conv", "max_pool")),
    ("matmul", ("addmm", "::mm", "bmm", "matmul", "linear")),
    ("norm", ("batch_norm", "layer_norm", "native_layer_norm", "native_batch_norm")),
)


def kind_of(name: str) -> str:
    for kind, fragments in KINDS:
        if any(fragment in name for fragment in fragments):
            return kind
    return "other"


def profile_model(name: str, batch_size: int, img_size: int, steps: int, top: int) -> dict:
    torch.manual_seed(0)
    model = to_fast_layout(foveal.create_model(name, num_classes=10, img_size=img_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(batch_size, 3, img_size, img_size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,))
    autocast = autocast_for(torch.device("cpu"))

    def step() -> None:
        train_step(model, images, labels, optimizer, criterion, grad_clip=1.0, autocast=autocast)

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - started
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    by_kind: dict[str, float] = defaultdict(float)
    for event in events:
        by_kind[kind_of(event.key)] += event.self_cpu_time_total
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "model": name,
        "batch_size": batch_size,
        "img_size": img_size,
        "bf16_autocast": autocast is not None,
        "images_per_second": round(steps * batch_size / seconds, 1),
        "share_by_kind": {k: round(v / total, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top_operators": [
            {"name": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count}
            for e in ranked
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="hybrid-mini,cnn-airbench-half")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    models = ["hybrid-nano"] if args.quick else args.models.split(",")
    batch_size, steps = (16, 2) if args.quick else (args.batch_size, args.steps)
    load_before = load_average()
    rows = [profile_model(m, batch_size, args.img_size, steps, args.top) for m in models]
    for row in rows:
        kinds = ", ".join(f"{k} {v:.0%}" for k, v in row["share_by_kind"].items())
        print(f"{row['model']}: {row['images_per_second']:.0f} images/s (profiled); {kinds}")
        for op in row["top_operators"]:
            print(f"    {op['share']:6.1%}  {op['calls']:5d}  {op['name']}")
    record = {"rows": rows, "load_average_before": load_before, "load_average_after": load_average()}
    save(args.name or ("quick_step_profile" if args.quick else "step_profile"), record, args.out)


if __name__ == "__main__":
    main()
