"""The per-epoch validation: the kept model on the validation images (a sample, in the views the
config says), timed for the budget's plan, and the epoch's results.csv row and line."""

from __future__ import annotations

from torch import nn

from foveal.evaluation.metrics import shows_top_k, top_k_for
from foveal.evaluation.workflow import evaluate
from foveal.training.progress import say
from foveal.training.setup import RunSetup
from foveal.training.trainer import Trainer


def epoch_row(run: RunSetup, trainer: Trainer) -> dict[str, float]:
    """The epoch's results.csv row, its validation timed (for the budget's plan); its images counted."""
    config, progress = run.config, trainer.progress
    n = min(len(run.data.train), progress.step * config.optim.batch_size)  # less when the budget cut it short
    seconds = progress.epoch_seconds
    validation_started = trainer.clock.now()
    row = {
        "epoch": progress.epoch,
        "train_loss": progress.epoch_loss_sum / n,
        "train_top1": progress.epoch_correct / n,
        "lr": trainer.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_second": n / seconds,
        **validate(run, trainer.model_to_keep(run.model)),
    }
    trainer.validation_seconds = trainer.clock.now() - validation_started
    progress.seen += n
    return row


def say_epoch(run: RunSetup, label: str, row: dict[str, float], skipped: int, quiet: bool) -> None:
    """The epoch's line: `label` (loop.epoch_label), its training and validation figures and speed."""
    classes = len(run.data.classes)
    top_k = top_k_for(classes)
    say(
        f"{label}: loss {row['train_loss']:.4f}, "
        f"train top-1 {row['train_top1']:.2%}, "
        f"val loss {row['val_loss']:.4f}, val top-1 {row['val_top1']:.2%}, "
        + (f"top-{top_k} {row['val_top5']:.2%}, " if shows_top_k(top_k, classes) else "")
        + f"{row['seconds']:.1f} s ({row['images_per_second']:.0f} img/s)"
        + (f", {skipped} non-finite steps skipped" if skipped else ""),
        quiet,
    )


def validate(run: RunSetup, model: nn.Module) -> dict[str, float]:
    """Loss, top-1 and top-5 on the validation images (an evenly spaced subset, if limited), in the
    config's `epoch_val_views`."""
    val, limit = run.data.val, run.config.epoch_val_limit
    if limit is not None:
        val = val.evenly_spaced(limit)
    preprocessing = run.info.preprocessing.with_views(run.config.epoch_val_views)
    result = evaluate(model, val, preprocessing, device=run.device, batch_size=run.config.run.eval_batch_size)
    return {"val_loss": result.loss, "val_top1": result.metrics.top1, "val_top5": result.metrics.top5}
