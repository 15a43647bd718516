"""The training loop: data, model, epochs of `train_step`, validation, checkpoints, records."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.data.augment import crop_and_flip
from foveal.data.preprocess import Preprocessing, channel_stats
from foveal.data.randomness import epoch_order
from foveal.data.sources import DataSplits, default_img_size, load_training_data
from foveal.evaluate import (
    ClassificationMetrics,
    compute_metrics,
    plot_confusion_matrix,
    plot_training_curves,
)
from foveal.inference import mean_loss, predict_logits
from foveal.models import build_model, config_to_dict, model_config
from foveal.runtime import autocast_for, resolve_device, seed_everything, set_threads
from foveal.saved import ModelInfo, save_model
from foveal.train.config import TrainConfig, make_train_config
from foveal.train.progress import EpochBar, say
from foveal.train.records import write_json, write_results, write_skipped
from foveal.train.run_dir import next_run_dir
from foveal.train.schedule import build_optimizer, warmup_cosine
from foveal.train.step import train_step


@dataclass
class TrainResult:
    """What a finished run reports. Accuracies are fractions in [0, 1]."""

    run_dir: Path
    best_top1: float
    best_epoch: int
    final_top1: float  # val top-1 after the last epoch
    epochs: int
    seconds: float  # wall clock from the call to the saved, evaluated model
    data_seconds: float  # of which: finding and decoding the images
    train_images_per_second: float  # training steps only (augmentation included, validation not)
    metrics: ClassificationMetrics  # the best model on the validation / held-out images


@dataclass
class _Run:
    """The pieces one run works with, built once by `_prepare`."""

    config: TrainConfig
    data: DataSplits
    model: nn.Module
    info: ModelInfo
    device: torch.device
    run_dir: Path
    data_seconds: float


def train(config: TrainConfig | None = None, *, quiet: bool = False, **options: Any) -> TrainResult:
    """Train a classifier and return its result; the run folder holds weights, curves and metrics.

    Args:
        config: a TrainConfig, or None to build one from `options` (e.g. data="digits", epochs=5).
        quiet: print nothing.
    """
    started = time.perf_counter()
    if config is None:
        config = make_train_config(**options)
    elif options:
        config = make_train_config(**{**config.to_dict(), **options})
    run = _prepare(config, quiet)
    data_seconds = run.data_seconds
    rows, best_top1, best_epoch, seen = _fit(run, quiet)
    plot_training_curves(run.run_dir / "results.csv", run.run_dir / "results.png")
    metrics = _final_evaluation(run, best_epoch)
    seconds = time.perf_counter() - started
    train_seconds = sum(r["seconds"] for r in rows)
    result = TrainResult(
        run_dir=run.run_dir,
        best_top1=best_top1,
        best_epoch=best_epoch,
        final_top1=rows[-1]["val_top1"],
        epochs=len(rows),
        seconds=seconds,
        data_seconds=data_seconds,
        train_images_per_second=seen / max(train_seconds, 1e-9),
        metrics=metrics,
    )
    say(
        f"done in {seconds:.0f} s: best val top-1 {best_top1:.2%} at epoch {best_epoch}, "
        f"{result.train_images_per_second:.0f} train images/s. Saved {run.run_dir}/weights/best.safetensors",
        quiet,
    )
    return result


def _prepare(config: TrainConfig, quiet: bool) -> _Run:
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    img_size = config.img_size or default_img_size(config.data)
    overrides = {} if config.drop_path_rate is None else {"drop_path_rate": config.drop_path_rate}
    data_started = time.perf_counter()
    data = load_training_data(
        config.data, img_size, val_fraction=config.val_fraction, split_manifest=config.split_manifest
    )
    data_seconds = time.perf_counter() - data_started
    # Build the model before creating the run folder, so a bad option leaves no empty folder.
    arch = model_config(config.model, num_classes=len(data.classes), img_size=img_size, **overrides)
    model = build_model(arch).to(device)
    preprocessing = Preprocessing(img_size, *channel_stats(data.train))
    run_dir = next_run_dir(config.out, config.name)
    info = ModelInfo(
        arch, data.classes, preprocessing, {"train_config": config.to_dict(), "data": data.description}
    )
    params = sum(p.numel() for p in model.parameters())
    write_json(
        run_dir / "config.json",
        {
            "train": config.to_dict(),
            "model": config_to_dict(arch),
            "preprocessing": preprocessing.to_dict(),
            "classes": data.classes,
            "data": data.description,
            "device": str(device),
            "threads": threads,
            "parameters": params,
            "torch": torch.__version__,
        },
    )
    if data.split:
        write_json(run_dir / "split.json", {"classes": data.classes, **data.split})
    skipped = data.train.skipped + data.val.skipped
    write_skipped(run_dir / "skipped.txt", skipped)
    say(f"data: {data.description}; {len(data.classes)} classes", quiet)
    if skipped:
        say(
            f"skipped {len(skipped)} unreadable files (listed in {run_dir}/skipped.txt), e.g. "
            f"{skipped[0][0]}: {skipped[0][1]}",
            quiet,
        )
    say(
        f"model: {config.model} ({params / 1e6:.2f}M parameters) at {img_size}px on {device} "
        f"({threads} threads); run folder {run_dir}",
        quiet,
    )
    return _Run(config, data, model, info, device, run_dir, data_seconds)


def _fit(run: _Run, quiet: bool) -> tuple[list[dict[str, Any]], float, int, int]:
    config, data, model = run.config, run.data, run.model
    n = len(data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    optimizer = build_optimizer(model, config.optimizer, config.peak_lr, config.weight_decay)
    scheduler = warmup_cosine(
        optimizer,
        steps_per_epoch * config.epochs,
        round(config.warmup_epochs * steps_per_epoch),
        config.min_lr_ratio,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    autocast = autocast_for(run.device)
    flip = data.flip_safe if config.hflip is None else config.hflip
    padding = config.crop_padding if config.crop_padding is not None else run.info.preprocessing.img_size // 8
    rows: list[dict[str, Any]] = []
    best_top1, best_epoch, seen = -1.0, 0, 0
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        order = epoch_order(config.seed, epoch, n)
        bar = EpochBar(range(steps_per_epoch), steps_per_epoch, epoch, config.epochs, quiet)
        loss_sum, correct, skipped_steps = 0.0, 0, 0
        for step in bar:
            indices = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = crop_and_flip(
                data.train.images[indices], indices, config.seed, epoch, padding=padding, flip=flip
            )
            images = run.info.preprocessing.normalize(batch.to(run.device, non_blocking=True))
            result = train_step(
                model,
                images,
                data.train.labels[indices].to(run.device),
                optimizer,
                criterion,
                grad_clip=config.grad_clip,
                autocast=autocast,
            )
            scheduler.step()
            skipped_steps += not result.applied
            loss_sum += result.loss * len(indices) if result.applied else 0.0
            correct += result.correct
            bar.update(result.loss, result.correct / len(indices))
        bar.close()
        seconds = time.perf_counter() - epoch_start
        seen += n
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_top1": correct / n,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "images_per_second": n / seconds,
        }
        row.update(_validate(run))
        rows.append(row)
        write_results(run.run_dir / "results.csv", rows)
        info = _with_extra(run.info, epoch=epoch, val_top1=row["val_top1"])
        save_model(run.run_dir / "weights" / "last.safetensors", model, info)
        if math.isfinite(row["val_top1"]) and row["val_top1"] > best_top1:  # a NaN metric is never best
            best_top1, best_epoch = row["val_top1"], epoch
            save_model(run.run_dir / "weights" / "best.safetensors", model, info)
        say(
            f"epoch {epoch}/{config.epochs}: loss {row['train_loss']:.4f}, "
            f"train top-1 {row['train_top1']:.2%}, "
            f"val loss {row['val_loss']:.4f}, val top-1 {row['val_top1']:.2%}, top-5 {row['val_top5']:.2%}, "
            f"{seconds:.1f} s ({row['images_per_second']:.0f} img/s)"
            + (f", {skipped_steps} non-finite steps skipped" if skipped_steps else ""),
            quiet,
        )
    return rows, best_top1, best_epoch, seen


def _validate(run: _Run) -> dict[str, float]:
    logits = predict_logits(
        run.model,
        run.data.val.images,
        run.info.preprocessing,
        device=run.device,
        batch_size=run.config.eval_batch_size,
    )
    labels = run.data.val.labels
    k = min(5, logits.shape[1])
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
    return {
        "val_loss": mean_loss(logits, labels),
        "val_top1": float((logits.argmax(1) == labels).float().mean()),
        "val_top5": float(top5),
    }


def _with_extra(info: ModelInfo, **extra: Any) -> ModelInfo:
    return ModelInfo(info.config, info.classes, info.preprocessing, {**info.extra, **extra})


def _final_evaluation(run: _Run, best_epoch: int) -> ClassificationMetrics:
    """Evaluate the best weights on the validation images; write metrics.json and the confusion matrix."""
    from foveal.saved import load_model

    model, info = load_model(run.run_dir / "weights" / "best.safetensors", run.device)
    logits = predict_logits(
        model,
        run.data.val.images,
        info.preprocessing,
        device=run.device,
        batch_size=run.config.eval_batch_size,
    )
    metrics = compute_metrics(logits, run.data.val.labels, run.data.classes)
    write_json(
        run.run_dir / "metrics.json", {"epoch": best_epoch, "data": run.data.description, **metrics.to_dict()}
    )
    plot_confusion_matrix(metrics.confusion, run.data.classes, run.run_dir / "confusion_matrix.png")
    return metrics
