"""The training loop: epochs of `train_step`, validation, checkpoints, records, exact resume.

What the loop hands off: re-planning a time budget (replan.py), the model it keeps and early stopping
(keeping.py), the final evaluation and calibration (final.py), the trainer's state (trainer.py); every
time it reads comes from one clock (clock.py).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.config import TrainConfig, make_train_config
from foveal.data.randomness import mix
from foveal.errors import FovealError
from foveal.predictor.saved import ModelInfo, save_model
from foveal.runtime import autocast_for, resolve_device
from foveal.tracking import RunStart, Trackers, open_trackers, run_tags
from foveal.training import distributed, elastic, final, keeping, probe, replan, validation
from foveal.training.batches import EpochBatches, augmentation_for, epoch_loader
from foveal.training.clock import SYSTEM_CLOCK, Clock
from foveal.training.final import TrainResult
from foveal.training.interrupt import DeferredInterrupt, TrainingInterrupted
from foveal.training.progress import EpochBar, say
from foveal.training.records import append_event
from foveal.training.setup import RunSetup, config_of_run, prepare_run
from foveal.training.state import Progress
from foveal.training.step import train_step
from foveal.training.trainer import Trainer, build_trainer, checkpoint, checkpoint_due, restore

DROPOUT_STREAM = 0xD809  # under torchrun: each rank's dropout / stochastic depth seed, per step


class TrainingDiverged(FovealError):
    """Too many non-finite steps in a row: the run stops, its checkpoints untouched."""


class _Weighted(nn.Module):
    """A loss times a constant weight (a rank's share of the step, see _run_epoch)."""

    def __init__(self, criterion: nn.Module, weight: float) -> None:
        super().__init__()
        self.criterion, self.weight = criterion, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, targets) * self.weight


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    started: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
    epilogue: Callable[[TrainResult], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a classifier (or resume one) and return its result.

    Args:
        config: a TrainConfig, or None to build one from `options` (e.g. data="digits", epochs=5).
        resume: a run folder to continue from its newest checkpoint, exactly as if never stopped.
        quiet: print nothing.
        started: `clock.now()` value a time budget counts from (default: now; the CLI passes its
            process's start, on the system clock).
        clock: what the run's times, checkpoint intervals, budget and progress are measured with
            (clock.py: the system clock, or a test's FakeClock).
        epilogue: called with the result once the model is saved and evaluated, before the loggers
            record the run's end (api.train writes report.html there, for MLflow to keep).
    """
    started = clock.now() if started is None else started
    run_dir = None
    if resume is not None:
        if config is not None or options:
            raise FovealError("a resumed run keeps the settings it started with; pass only the run folder.")
        config, run_dir = config_of_run(resume)
    else:
        config = make_train_config(**options) if config is None else config.replace(**options)
    found = distributed.world_from_env()  # one process, or one rank of those torchrun started
    quiet = quiet or not found.is_main  # rank 0 speaks for all
    distributed.start(found, resolve_device(config.run.device))
    try:
        if run_dir is None and elastic.restarted():  # torchrun restarted us: continue the run
            run_dir = distributed.from_main(elastic.run_to_continue(config) if found.is_main else None)
            if run_dir is not None:
                config, run_dir = config_of_run(run_dir)
        return _train(config, run_dir, quiet, started, clock, epilogue)
    finally:
        distributed.stop()


def _train(
    config: TrainConfig,
    run_dir: Path | None,
    quiet: bool,
    started: float,
    clock: Clock,
    epilogue: Callable[[TrainResult], None] | None,
) -> TrainResult:
    """`train` once the processes are joined: a new run, or `run_dir` resumed."""
    # Rank 0 records the run; a missing logger or a silent server stops it before its folder is made.
    trackers = open_trackers(config.tracking, resumed=run_dir) if distributed.is_main() else Trackers([])
    run = prepare_run(config, quiet, run_dir=run_dir, clock=clock)
    trainer = build_trainer(run, started, clock)
    trainer.trackers = trackers
    if run_dir is not None:
        restore(run, trainer, quiet)
        if trainer.progress.planned_steps:  # a time-budget run keeps the plan it had
            replan.apply_plan(run, trainer)
    elif run.config.finetune.finetune in ("probe", "lp-ft"):  # a new run from learned weights
        probe.probe_before_training(run, trainer, quiet)
    trainer.replica = distributed.wrap(run.model, run.device)  # after the restore: DDP copies rank 0's
    status = "failed"
    try:
        trackers.start(_run_start(run, trainer))
        _fit(run, trainer, quiet)
        evaluation = final.finish(run, trainer.progress)
        report = replan.end_report_plan(run, trainer)
        result = final.train_result(run, trainer.progress, evaluation, clock.now() - started, report, quiet)
        if epilogue is not None:
            epilogue(result)
        final.track_end(run, trackers, evaluation, trainer.progress.global_step)
        status = "finished"
        return result
    except (TrainingInterrupted, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        trackers.close(status)


def _run_start(run: RunSetup, trainer: Trainer) -> RunStart:
    """What the loggers are told at the start: the run folder's record and tags; where a resume starts."""
    name = run.config.model.preset or run.info.config.name  # a fine-tuned model: its source's architecture
    return RunStart(
        run.run_dir,
        run.config,
        json.loads((run.run_dir / "config.json").read_text()),
        run_tags(name, run.data.description, run.device),
        resumed_at=trainer.progress.global_step if trainer.resumed else None,
    )


def epoch_label(run: RunSetup, trainer: Trainer, epoch: int) -> str:
    """'epoch 3/20'; under a time budget, of the epochs the plan now fits ('epoch 3/~11'), once the
    steps have been timed (before that, 'epoch 1')."""
    if not run.config.optim.time_budget:
        return f"epoch {epoch}/{run.config.optim.epochs}"
    planned = trainer.progress.planned_steps
    if not planned:
        return f"epoch {epoch}"
    return f"epoch {epoch}/~{math.ceil(planned / run.steps_per_epoch)}"


def _fit(run: RunSetup, trainer: Trainer, quiet: bool) -> None:
    """Train epoch after epoch until the run is finished. A Ctrl-C (DeferredInterrupt) stops it after
    the step or the epoch's end in hand, with a checkpoint, raising TrainingInterrupted."""
    with DeferredInterrupt(quiet) as interrupt:
        while not trainer.progress.finished:  # rank 0's progress replaces the others' each epoch
            if trainer.progress.step == 0:
                trainer.progress.start_epoch(trainer.progress.epoch)
            if run.config.finetune.finetune != "probe":  # a probe's one epoch was on cached features
                _run_epoch(run, trainer, quiet, interrupt)
            _end_epoch(run, trainer, quiet)  # its checkpoint is saved before the check below
            (requested,), _ = distributed.agree([float(interrupt.requested)], [])  # a Ctrl-C on any rank
            if requested:
                raise TrainingInterrupted(_resume_advice(run, trainer.progress))


def _run_epoch(run: RunSetup, trainer: Trainer, quiet: bool, interrupt: DeferredInterrupt) -> None:
    """Train the rest of the epoch in progress, checkpointing as configured; on a Ctrl-C, checkpoint
    after the step in hand and raise TrainingInterrupted."""
    config, progress, world = run.config, trainer.progress, distributed.world()
    batches = EpochBatches(
        run.data.train,
        progress.epoch,
        config.run.seed,
        config.optim.batch_size,
        augmentation_for(run.config, run.info.preprocessing.img_size, run.data.flip_safe),
        part=(world.rank, world.size),
    )
    loader = epoch_loader(batches, progress.step, config.data.workers, pin_memory=run.device.type == "cuda")
    label = epoch_label(run, trainer, progress.epoch)
    bar = EpochBar(loader, len(batches) - progress.step, label, quiet, trainer.clock)
    autocast = autocast_for(run.device, config.run.precision)  # resolved by prepare_run
    epoch_clock = last = trainer.clock.now()
    for images, targets in bar:
        whole = batches.global_size(progress.step)  # images of this step on all ranks
        criterion = trainer.criterion
        if world.size > 1:
            # Dropout and stochastic depth draw from a stream of (seed, rank, step): a restarted or
            # resumed rank draws what it would have, with no RNG state to carry per rank.
            torch.manual_seed(mix(config.run.seed, DROPOUT_STREAM, world.rank, progress.global_step))
            # DDP averages the ranks' gradients; each rank's loss is the mean over its slice, weighted
            # by slice / (whole / ranks) so that the average is the mean over the whole batch, as one
            # process's, also when an epoch's short last batch splits unevenly (the weight is 1 else).
            criterion = _Weighted(trainer.criterion, len(targets) * world.size / whole)
        result = train_step(
            trainer.replica,
            run.info.preprocessing.normalize(images.to(run.device, non_blocking=True)),
            targets.to(run.device, non_blocking=True),
            trainer.optimizer,
            criterion,
            grad_clip=config.optim.grad_clip,
            autocast=autocast,
        )
        lr = trainer.optimizer.param_groups[0]["lr"]  # the step's, before the schedule moves it
        trainer.scheduler.step()
        if trainer.ema is not None and result.applied:
            trainer.ema.update_parameters(run.model)
        progress.step += 1
        # `applied` is the same on every rank: the gradient norm is of the averaged gradients, and a
        # non-finite loss on one rank comes with non-finite gradients, which the average spreads.
        if result.applied:
            progress.bad_in_a_row = 0
        else:
            _non_finite_step(run, progress, result.loss, result.grad_norm)
        progress.global_step += 1
        loss_sum = result.loss * whole / world.size  # this slice's summed loss (the weight undone)
        now = trainer.clock.now()
        step_seconds = now - last  # loader, augmentation and step: what the budget pays
        trainer.step_seconds += step_seconds
        trainer.steps_timed += 1
        last = now
        # Rank 0 decides what depends on its clock; one all_reduce tells the others and sums the step.
        budget_spent = distributed.is_main() and bool(config.optim.time_budget)
        budget_spent = budget_spent and replan.budget_ends_epoch(run, trainer, step_seconds)
        due = distributed.is_main() and progress.step < len(batches) and checkpoint_due(config, trainer)
        (loss_sum, correct, requested), (planned, budget_spent, due) = distributed.agree(
            [loss_sum, float(result.correct), float(interrupt.requested)],
            [float(progress.planned_steps), float(budget_spent), float(due)],
        )
        if int(planned) != progress.planned_steps:  # a rank told of rank 0's new plan
            progress.planned_steps = int(planned)
            replan.apply_plan(run, trainer)
        progress.epoch_correct += int(correct)
        if result.applied:
            progress.epoch_loss_sum += loss_sum
            trainer.trackers.step(progress.global_step, {"train/loss": loss_sum / whole, "train/lr": lr})
        bar.update(loss_sum / whole, correct / whole, whole)
        if trainer.lookahead is not None:  # after the budget's check: it may have moved the last step
            trainer.lookahead.step(
                run.model, progress.global_step, progress.planned_steps or trainer.plan.total_steps
            )
        if budget_spent:
            break  # this epoch ends early; _end_epoch still validates and saves it
        if requested and progress.step < len(batches):  # Ctrl-C (on any rank): this step is whole; stop
            # (after an epoch's last step, _fit stops once _end_epoch has validated and saved it)
            progress.epoch_seconds += trainer.clock.now() - epoch_clock
            bar.close()
            checkpoint(run, trainer)
            raise TrainingInterrupted(_resume_advice(run, progress))
        if due:
            now = trainer.clock.now()
            progress.epoch_seconds += now - epoch_clock
            epoch_clock = now
            checkpoint(run, trainer)
    bar.close()
    progress.epoch_seconds += trainer.clock.now() - epoch_clock


def _resume_advice(run: RunSetup, progress: Progress) -> str:
    """What TrainingInterrupted says: where the run stopped and the command that continues it."""
    return (
        f"interrupted at epoch {progress.epoch}, step {progress.step}; checkpoint saved in "
        f"{run.checkpoints}. Continue exactly where it stopped with:\n"
        f"  foveal train --resume {shlex.quote(str(run.run_dir))}"
    )


def _non_finite_step(run: RunSetup, progress: Progress, loss: float, grad_norm: float) -> None:
    """Log a skipped update; too many in a row stop the run with advice."""
    progress.epoch_skipped += 1
    progress.bad_in_a_row += 1
    message = (
        f"epoch {progress.epoch} step {progress.step}: non-finite loss ({loss:.4g}) or gradient norm "
        f"({grad_norm:.4g}); update skipped, weights unchanged"
    )
    if distributed.is_main():
        append_event(run.run_dir, message)
        say(f"warning: {message}")
    if progress.bad_in_a_row >= run.config.optim.max_bad_steps:
        raise TrainingDiverged(
            f"training diverged: {progress.bad_in_a_row} non-finite steps in a row (epoch {progress.epoch}, "
            f"step {progress.step}). The checkpoints and weights in {run.run_dir} are from before it. Try a "
            f"lower --lr (now {run.config.optim.peak_lr:g}), keep gradient clipping on, or check the images."
        )


def _end_epoch(run: RunSetup, trainer: Trainer, quiet: bool) -> None:
    """Validate, record, save last/best and a checkpoint; mark the run finished when it is.

    Under torchrun rank 0 does it alone, on every validation image (the others wait), so the figures
    are one process's; its progress (results, best epoch, the budget's plan, whether the run is
    finished) then becomes every rank's.
    """
    if distributed.is_main():
        _validate_and_record(run, trainer, quiet)
    trainer.progress = distributed.from_main(trainer.progress)
    if distributed.active() and trainer.progress.planned_steps:
        replan.apply_plan(run, trainer)
    checkpoint(run, trainer)


def _validate_and_record(run: RunSetup, trainer: Trainer, quiet: bool) -> None:
    """_end_epoch's work on the one writer: validation, results.csv, last/best weights, the decision
    whether the run is finished, and the next epoch's progress set up."""
    config, progress = run.config, trainer.progress
    epoch, budget = progress.epoch, config.optim.time_budget
    probe_only = config.finetune.finetune == "probe"  # the probe was the run: its one epoch is kept
    if probe_only:
        budget = None
    row = validation.epoch_row(run, trainer)
    progress.rows.append(row)
    trainer.trackers.epoch(progress.global_step, progress.rows)  # results.csv, and any --log
    info = ModelInfo(
        run.info.config,
        run.info.classes,
        run.info.preprocessing,
        {**run.info.extra, "epoch": epoch, "val_top1": row["val_top1"]},
    )
    kept = trainer.model_to_keep(run.model)
    save_model(run.run_dir / "weights" / "last.safetensors", kept, info)
    keeping.keep_if_best(run.run_dir, progress, row["val_top1"], kept, info, budget)
    validation.say_epoch(run, epoch_label(run, trainer, epoch), row, progress.epoch_skipped, quiet)
    early = keeping.stop_early(run.run_dir, progress, config.optim.patience, quiet)
    if probe_only:
        done = True
    else:
        done = replan.budget_ends_run(run, trainer) if budget else epoch >= config.optim.epochs
    progress.finished = early or done
    progress.start_epoch(epoch + 1)


__all__ = ["TrainResult", "TrainingDiverged", "TrainingInterrupted", "train"]
