"""Which epoch's model a run keeps (best.safetensors), and when it stops early for want of a better one.

Without a budget the best validation top-1 is kept, and `patience` epochs without a better one stop
the run. Under a time budget the schedule is laid out to end annealed, so the final model is the one
kept: picking an earlier epoch by a 2,000-image validation would select on noise.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from foveal.predictor.saved import ModelInfo, save_model
from foveal.training.progress import say
from foveal.training.records import append_event
from foveal.training.replan import plan_spent
from foveal.training.state import Progress


def is_kept(val_top1: float, progress: Progress, time_budget: float | None) -> bool:
    """Whether this epoch's model, validated at `val_top1`, becomes the kept one: the best so far, or
    under a time budget the final one (once the plan is spent). NaN is never kept."""
    keep = plan_spent(progress) if time_budget else val_top1 > progress.best_top1
    return math.isfinite(val_top1) and keep


def keep_if_best(
    run_dir: Path,
    progress: Progress,
    val_top1: float,
    model: nn.Module,
    info: ModelInfo,
    time_budget: float | None,
) -> None:
    """Save `model` as the run's best.safetensors and note its epoch, when it is the one to keep."""
    if is_kept(val_top1, progress, time_budget):
        progress.best_top1, progress.best_epoch = val_top1, progress.epoch
        save_model(run_dir / "weights" / "best.safetensors", model, info)


def stops_early(patience: int | None, epoch: int, best_epoch: int) -> bool:
    """Whether `patience` epochs have passed since the best one (never without a patience)."""
    return patience is not None and epoch - best_epoch >= patience


def stop_early(run_dir: Path, progress: Progress, patience: int | None, quiet: bool) -> bool:
    """Whether the run stops after this epoch for want of a better one; says so, and logs it."""
    if not stops_early(patience, progress.epoch, progress.best_epoch):
        return False
    say(
        f"early stop: no better val top-1 for {patience} epochs "
        f"(best {progress.best_top1:.2%} at epoch {progress.best_epoch})",
        quiet,
    )
    append_event(run_dir, f"early stop after epoch {progress.epoch}")
    return True
