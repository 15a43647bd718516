"""Issue #32: what this CPU can do with a public ViT (DeiT-tiny, ViT-S, patch 16, 224 px): training and
inference images/s, the probe's epoch on cached features against an epoch of full fine-tuning, and
the passes over 1,000 photos that `--time 10m` buys in each mode.

    python benchmarks/vit_cpu.py --name vit_cpu_amd_avx2
    python benchmarks/vit_cpu.py --quick        # CI: a tiny ViT at 32 px, a few steps

Random weights cost what learned ones do. Each figure is the median of `--repeats` timed rounds after a
warmup round, in one process, one model after the other: training through the one train step
(AdamW, fp32, batch 32, 2 classes), inference under no_grad (batch 64), the probe through
training/probe.py's `fit_probe` on tokens of the model's shape (1,000 images, as `--finetune probe`
caches them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import load_average, save

from foveal.models import create_model
from foveal.training.probe import fit_probe
from foveal.training.recipe import TRAINING_SHARE
from foveal.training.step import train_step

MODELS = ("deit-tiny", "vit-small")
PHOTOS, BUDGET_SECONDS, PROBE_EPOCHS = 1_000, 600.0, 100


def timed(fn, repeats: int) -> list[float]:
    fn()  # warmup: allocations, oneDNN's kernel choices
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def measure(name: str, img_size: int, repeats: int, photos: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, img_size=img_size)
    images = torch.randn(32, 3, img_size, img_size)
    targets = torch.randint(0, 2, (32,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    train = timed(lambda: train_step(model, images, targets, optimizer, criterion, grad_clip=1.0), repeats)
    batch = torch.randn(64, 3, img_size, img_size)
    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(batch)

    inference = timed(infer, repeats)
    with torch.no_grad():
        one = model.forward_features(batch[:1]).tokens  # (1, T, C)
    tokens = one.repeat(photos, 1, 1) + torch.randn(photos, *one.shape[1:]) * 0.1
    labels = torch.randint(0, 2, (photos,))
    probe_epochs = 5
    probe = timed(lambda: fit_probe(model, tokens, labels, epochs=probe_epochs, seed=0), max(1, repeats // 2))
    train_ips = 32 / statistics.median(train)
    infer_ips = 64 / statistics.median(inference)
    probe_epoch = statistics.median(probe) / probe_epochs
    full_epoch = photos / train_ips
    features = photos / infer_ips  # the probe's one backbone pass
    budget = BUDGET_SECONDS * TRAINING_SHARE
    probe_total = features + PROBE_EPOCHS * probe_epoch
    return {
        "model": name,
        "img_size": img_size,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_images_per_second": round(train_ips, 2),
        "train_seconds_per_batch_32": [round(s, 3) for s in train],
        "inference_images_per_second": round(infer_ips, 2),
        "probe_epoch_seconds": round(probe_epoch, 4),
        "full_epoch_seconds": round(full_epoch, 1),
        "probe_speedup_per_epoch": round(full_epoch / probe_epoch, 1),
        "photos": photos,
        "features_seconds": round(features, 1),
        "in_10_minutes": {
            "full_passes": round(budget / full_epoch, 2),
            "probe_epochs": round((budget - features) / probe_epoch) if budget > features else 0,
            "lp_ft_passes_after_probe": round(max(0.0, budget - probe_total) / full_epoch, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="vit_cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="results folder [default: benchmarks/results]")
    args = parser.parse_args()
    load_before = load_average()
    if args.quick:
        results = [measure("deit-tiny", 32, 1, 50)]
    else:
        results = [measure(name, 224, args.repeats, PHOTOS) for name in MODELS]
    for r in results:
        print(
            f"{r['model']}: train {r['train_images_per_second']:.1f} img/s, inference "
            f"{r['inference_images_per_second']:.1f} img/s, probe epoch {r['probe_epoch_seconds']:.3f} s "
            f"against {r['full_epoch_seconds']:.0f} s ({r['probe_speedup_per_epoch']:.0f}x)"
        )
    record = {
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "results": results,
    }
    save("vit_cpu_quick" if args.quick else args.name, record, out=args.out)


if __name__ == "__main__":
    main()
