"""The conventional way, side by side: the same model and recipe trained from JPEG files through a
per-image torchvision pipeline, as the reference training scripts do (ImageFolder, PIL decode per
image per epoch, v2 transforms, DataLoader with worker processes), for the same time budget.

    python benchmarks/reference_pipeline.py ../shared/data/cifar10 --time 10m
    python benchmarks/reference_pipeline.py ../shared/data/cifar10 --quick     # CI: 40 images a class

Only the input pipeline differs from `foveal train --time`: the recipe's model, batch size,
optimizer, warmup-cosine schedule laid out over the steps that fit the budget, EMA, loss and
test-set evaluation are Foveal's own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import load_average, save
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2
from train_time import subset_folder

import foveal
from foveal.config import make_train_config, parse_duration
from foveal.data.preprocess import Preprocessing, channel_stats
from foveal.data.sources import load_evaluation_data, load_training_data
from foveal.evaluation.workflow import evaluate
from foveal.models.layers.whitening import init_from_data
from foveal.runtime import to_fast_layout
from foveal.training.budget import CALIBRATION_STEPS
from foveal.training.ema import make_ema
from foveal.training.recipe import resolve_recipe
from foveal.training.schedule import StepPlan, build_optimizer, lr_schedule
from foveal.training.step import train_step


def per_image_loader(root: Path, preprocessing: Preprocessing, batch_size: int, workers: int) -> DataLoader:
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomCrop(preprocessing.img_size, padding=preprocessing.img_size // 8),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )
    images = datasets.ImageFolder(str(root), transform=transform)
    return DataLoader(
        images,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def train_per_image(root: Path, budget: float, model_name: str | None = None, workers: int = 2) -> dict:
    """Train the recipe's model for `budget` seconds through the per-image pipeline; its record."""
    started = time.perf_counter()
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    # Normalisation statistics and whitening as Foveal computes them, so only the pipeline differs.
    decoded = load_training_data(str(root), 32).train
    preprocessing = Preprocessing(32, *channel_stats(decoded))
    options = {"model": model_name} if model_name else {}
    recipe, _ = resolve_recipe(
        make_train_config(time_budget=budget, **options), len(decoded), torch.device("cpu"), 32, len(classes)
    )
    optim = recipe.optim
    loader = per_image_loader(root / "train", preprocessing, optim.batch_size, workers)
    model = foveal.create_model(recipe.model.preset, num_classes=len(classes), img_size=32)
    init_from_data(model, decoded.images, preprocessing.normalize)
    model = to_fast_layout(model)
    optimizer = build_optimizer(model, optim)
    ema = make_ema(model, optim.ema_decay)
    plan = StepPlan(total_steps=10**9, warmup_steps=round(optim.warmup_epochs * len(loader)))
    scheduler = lr_schedule(optimizer, plan, optim)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
    train_started, step, seen = time.perf_counter(), 0, 0
    reserve = 15.0 + (time.perf_counter() - started)  # the final evaluation; set-up already spent
    while step < plan.total_steps:
        for images, labels in loader:
            images = images.contiguous(memory_format=torch.channels_last)
            train_step(model, images, labels, optimizer, criterion, grad_clip=optim.grad_clip)
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step, seen = step + 1, seen + len(labels)
            if step == CALIBRATION_STEPS:  # lay the schedule over the steps that fit
                per_step = (time.perf_counter() - train_started) / step
                plan.total_steps = max(step + 1, int((budget - reserve) / per_step))
                plan.warmup_steps = min(plan.warmup_steps, plan.total_steps // 5)
            if step >= plan.total_steps:
                break
    train_seconds = time.perf_counter() - train_started
    test, _ = load_evaluation_data(str(root), classes, preprocessing)
    kept = ema.module if ema is not None else model
    evaluation = evaluate(kept, test, preprocessing, device=torch.device("cpu"))
    return {
        "model": recipe.model.preset,
        "batch_size": optim.batch_size,
        "pipeline": f"torchvision ImageFolder + v2 per image, DataLoader({workers} workers)",
        "budget_seconds": budget,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "passes": round(seen / len(loader.dataset), 2),
        "train_images_per_second": round(seen / train_seconds, 1),
        "test_top1": round(evaluation.metrics.top1, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="a root with train/ and test/ class folders")
    parser.add_argument("--model", default=None, help="[default: the --time recipe's choice]")
    parser.add_argument("--time", default="10m")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="40 images a class, 20 s")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    budget = 20.0 if args.quick else parse_duration(args.time)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data)
        if args.quick:
            root = subset_folder(root, Path(scratch) / "subset", per_class=40)
        record = train_per_image(root, budget, args.model, args.workers)
    record = {
        "data": args.data,
        "quick": args.quick,
        **record,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    save(args.name or ("quick_reference_pipeline" if args.quick else "reference_pipeline"), record, args.out)


if __name__ == "__main__":
    main()
