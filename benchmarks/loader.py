"""Data pipeline throughput against the training step's, on the real decoded images.

    python benchmarks/loader.py ../shared/data/cifar10            # 50,000 CIFAR-10 training images
    python benchmarks/loader.py ../shared/data/cifar10 --quick    # CI: 40 images a class

The loader's figure is what `EpochBatches` delivers (index the cached uint8 tensor, random crop and
flip, TrivialAugment, random erasing, MixUp or CutMix, normalise to float, channels-last), in the
training process, with every augmentation on. The step's figure times `train_step` on those
batches. Both are medians of several timed windows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import load_average, save
from train_time import subset_folder

import foveal
from foveal.data.preprocess import Preprocessing, channel_stats
from foveal.data.sources import load_training_data
from foveal.runtime import to_fast_layout
from foveal.training import train_step
from foveal.training.batches import Augmentation, EpochBatches


def median_rate(fn, batches: int, batch_size: int, windows: int) -> float:
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        for step in range(batches):
            fn(step)
        rates.append(batches * batch_size / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data")
    parser.add_argument("--model", default="foveal-nano")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if args.quick:
            data = str(subset_folder(Path(data), Path(scratch) / "subset", per_class=40))
        splits = load_training_data(data, 32)
    preprocessing = Preprocessing(32, *channel_stats(splits.train))
    # Every augmentation on, at once: the loader's worst case.
    augmentation = Augmentation(4, True, "trivial", erase=0.25, mixup_alpha=0.8, cutmix_alpha=1.0)
    batches = EpochBatches(
        splits.train, epoch=1, seed=0, batch_size=args.batch_size, augmentation=augmentation
    )
    count = min(len(batches), 4 if args.quick else 40)
    load_before = load_average()
    loader_rate = median_rate(lambda i: preprocessing.normalize(batches[i][0]), count, args.batch_size, 3)
    model = to_fast_layout(foveal.create_model(args.model, num_classes=len(splits.classes), img_size=32))
    optimizer, criterion = torch.optim.AdamW(model.parameters()), torch.nn.CrossEntropyLoss()
    prepared = [(preprocessing.normalize(batches[i][0]), batches[i][1]) for i in range(min(count, 5))]

    def step(i: int) -> None:
        images, labels = prepared[i % len(prepared)]
        train_step(model, images, labels, optimizer, criterion, grad_clip=1.0)

    step(0)  # warm-up
    step_rate = median_rate(step, min(count, 10), args.batch_size, 3)
    record = {
        "data": args.data,
        "quick": args.quick,
        "model": args.model,
        "batch_size": args.batch_size,
        "augmentation": augmentation.__dict__,
        "loader_images_per_second": round(loader_rate, 1),
        "step_images_per_second": round(step_rate, 1),
        "loader_over_step": round(loader_rate / step_rate, 1),
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    save(args.name or ("quick_loader" if args.quick else "loader"), record, args.out)


if __name__ == "__main__":
    main()
