"""The training loop: epochs of `train_step`, validation, checkpoints, records, exact resume."""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from foveal.config import TrainConfig, make_train_config
from foveal.data.preprocess import VIEW_COUNTS
from foveal.data.randomness import mix
from foveal.data.sources import DataSplits
from foveal.errors import FovealError
from foveal.evaluation.metrics import ClassificationMetrics, shows_top_k, top_k_for
from foveal.evaluation.plots import plot_training_curves
from foveal.evaluation.run import Evaluation, evaluate, save_evaluation
from foveal.predictor.inference import predict_logits, predict_outputs
from foveal.predictor.rejection import FIT_IMAGES, RejectionCount, calibrate
from foveal.predictor.saved import ModelInfo, load_model, save_model
from foveal.runtime import autocast_for, resolve_device
from foveal.training import distributed, elastic
from foveal.training.batches import Augmentation, EpochBatches, epoch_loader
from foveal.training.budget import (
    BudgetClock,
    calibrated,
    past_deadline,
    plan_total_steps,
)
from foveal.training.ema import make_ema
from foveal.training.interrupt import DeferredInterrupt, TrainingInterrupted
from foveal.training.lookahead import Lookahead
from foveal.training.progress import EpochBar, say
from foveal.training.records import append_event, write_results
from foveal.training.schedule import StepPlan, build_optimizer, lr_schedule
from foveal.training.setup import RunSetup, config_of_run, prepare_run
from foveal.training.state import Progress, latest_checkpoint, restore_rng, save_checkpoint
from foveal.training.step import train_step

Clock = Callable[[], float]
DROPOUT_STREAM = 0xD809  # under torchrun: each rank's dropout / stochastic depth seed, per step


class TrainingDiverged(FovealError):
    """Too many non-finite steps in a row: the run stops, its checkpoints untouched."""


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
    passes: float  # training images seen over the training set's size (epochs, the last partial counted so)
    evaluation: Evaluation  # the saved (best) model on every validation / held-out image, with its logits
    config: TrainConfig  # the resolved settings the run used
    data: DataSplits | None = field(repr=False)  # the run's images, for a report that follows without
    # reloading them; `foveal.train` lets go of them (None) once the report is written

    @property
    def metrics(self) -> ClassificationMetrics:
        return self.evaluation.metrics

    @property
    def kept_model(self) -> str:
        """What the saved model is, with its figure on every held-out image: under a time budget the
        final, annealed epoch's (the schedule ends there; the epochs' validations were on a sample),
        else the epoch with the best validation."""
        top1 = f"val top-1 {self.best_top1:.2%}"
        images = f"on {self.metrics.num_samples:,} held-out images"
        if self.config.optim.time_budget:
            return f"final model (epoch {self.best_epoch}, annealed): {top1} {images}"
        return f"best {top1} (epoch {self.best_epoch}) {images}"


@dataclass
class _Trainer:
    """The mutable pieces of a run: optimizer, schedule, loss, and where the run stands."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    criterion: nn.Module
    progress: Progress
    plan: StepPlan
    ema: AveragedModel | None  # the weight average that is validated and saved, when EMA is on
    lookahead: Lookahead | None  # the slow weights the model is synced to, when lookahead is on
    last_save: float  # clock() of the last checkpoint
    started: float  # clock() when the command started: the time budget counts from here
    clock: Clock  # seconds, monotonic: time.perf_counter, or a test's clock
    step_seconds: float = 0.0  # time spent in training steps by this process
    steps_timed: int = 0
    validation_seconds: float = 0.0  # the last validation pass's duration
    evaluation_seconds_per_view: float | None = None  # measured once, until a validation is timed
    resumed: bool = False
    replica: nn.Module | None = None  # what train_step runs: the model, or its DDP wrapper under torchrun

    def model_to_keep(self, model: nn.Module) -> nn.Module:
        """What gets validated and saved: the EMA of the weights when EMA is on, else the model."""
        return self.ema.module if self.ema is not None else model


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
    clock: Clock = time.perf_counter,
    **options: Any,
) -> TrainResult:
    """Train a classifier (or resume one) and return its result.

    Args:
        config: a TrainConfig, or None to build one from `options` (e.g. data="digits", epochs=5).
        resume: a run folder to continue from its newest checkpoint, exactly as if never stopped.
        quiet: print nothing.
        started: `clock()` value a time budget counts from (default: now; the CLI passes its
            process's start).
        clock: what the run's times, checkpoint intervals and budget are measured with.
    """
    started = clock() if started is None else started
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
        return _train(config, run_dir, quiet, started, clock)
    finally:
        distributed.stop()


def _train(
    config: TrainConfig, run_dir: Path | None, quiet: bool, started: float, clock: Clock
) -> TrainResult:
    """`train` once the processes are joined: a new run, or `run_dir` resumed."""
    run = prepare_run(config, quiet, run_dir=run_dir)
    trainer = _build_trainer(run, started, clock)
    if run_dir is not None:
        _restore(run, trainer, quiet)
    trainer.replica = distributed.wrap(run.model, run.device)  # after the restore: DDP copies rank 0's
    _fit(run, trainer, quiet)
    progress = trainer.progress
    evaluation = None
    if distributed.is_main():  # the one writer; the others wait for its figures
        top_k, classes = top_k_for(len(run.data.classes)), len(run.data.classes)
        plot_training_curves(
            run.run_dir / "results.csv",
            run.run_dir / "results.png",
            top_k=top_k if shows_top_k(top_k, classes) else None,
        )
        evaluation = _final_evaluation(run, progress.best_epoch, last_epoch=progress.rows[-1]["epoch"])
    evaluation = distributed.from_main(evaluation)  # once a run: logits of every held-out image
    seconds = clock() - started
    train_seconds = sum(r["seconds"] for r in progress.rows)
    result = TrainResult(
        run_dir=run.run_dir,
        best_top1=evaluation.metrics.top1,  # the kept model on every held-out image, in all its views
        best_epoch=progress.best_epoch,
        final_top1=progress.rows[-1]["val_top1"],
        epochs=len(progress.rows),
        seconds=seconds,
        data_seconds=run.data_seconds,
        train_images_per_second=progress.seen / max(train_seconds, 1e-9),
        passes=progress.seen / len(run.data.train),
        evaluation=evaluation,
        config=run.config,
        data=run.data,
    )
    say(
        f"done in {seconds:.0f} s (data {run.data_seconds:.0f} s, training steps {train_seconds:.0f} s; "
        f"the rest start-up, validation and the final evaluation): {result.kept_model}, "
        f"{result.train_images_per_second:.0f} train images/s. Saved {run.run_dir}/weights/best.safetensors",
        quiet,
    )
    return result


def epoch_label(run: RunSetup, trainer: _Trainer, epoch: int) -> str:
    """'epoch 3/20'; under a time budget, of the epochs the plan now fits ('epoch 3/~11'), once the
    steps have been timed (before that, 'epoch 1')."""
    if not run.config.optim.time_budget:
        return f"epoch {epoch}/{run.config.optim.epochs}"
    planned = trainer.progress.planned_steps
    return f"epoch {epoch}/~{math.ceil(planned / _steps_per_epoch(run))}" if planned else f"epoch {epoch}"


def _build_trainer(run: RunSetup, started: float, clock: Clock) -> _Trainer:
    config = run.config
    steps_per_epoch = _steps_per_epoch(run)
    optimizer = build_optimizer(run.model, config.optim)
    # With a time budget the total is provisional until the step time is measured (budget.py).
    plan = StepPlan(
        steps_per_epoch * config.optim.epochs, round(config.optim.warmup_epochs * steps_per_epoch)
    )
    scheduler = lr_schedule(optimizer, plan, config.optim)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    ema = make_ema(run.model, config.optim.ema_decay)
    lookahead = Lookahead() if config.optim.lookahead else None
    return _Trainer(
        optimizer, scheduler, criterion, Progress(), plan, ema, lookahead, clock(), started, clock
    )


def _restore(run: RunSetup, trainer: _Trainer, quiet: bool) -> None:
    """Load the newest checkpoint into the model, optimizer, schedule, RNG and progress."""
    if distributed.is_main():
        for stale in run.checkpoints.glob(".*.tmp"):  # a write that a crash interrupted: never used
            stale.unlink(missing_ok=True)
    distributed.barrier()  # the others read the folder only once it is tidy
    path, state = latest_checkpoint(run.checkpoints)
    progress = Progress(**state["progress"])
    # Training done but killed before its final evaluation (metrics.json, written last): finish it.
    if progress.finished and (run.run_dir / "metrics.json").is_file():
        raise FovealError(f"{run.run_dir} already finished; nothing to resume.")
    run.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state["ema"])
    if trainer.lookahead is not None:
        trainer.lookahead.load_state_dict(state.get("lookahead"), run.device)
    restore_rng(state)
    trainer.progress = progress
    trainer.resumed = True
    if progress.planned_steps:  # a time-budget run keeps the plan it had (see _replan)
        _apply_plan(run, trainer)
    if distributed.is_main():
        append_event(run.run_dir, f"resumed from {path.name}")
    say(f"resuming {run.run_dir} at epoch {progress.epoch}, step {progress.step} ({path.name})", quiet)


def _fit(run: RunSetup, trainer: _Trainer, quiet: bool) -> None:
    """Train epoch after epoch until the run is finished. A Ctrl-C (DeferredInterrupt) stops it after
    the step or the epoch's end in hand, with a checkpoint, raising TrainingInterrupted."""
    with DeferredInterrupt(quiet) as interrupt:
        while not trainer.progress.finished:  # rank 0's progress replaces the others' each epoch
            if trainer.progress.step == 0:
                trainer.progress.start_epoch(trainer.progress.epoch)
            _run_epoch(run, trainer, quiet, interrupt)
            _end_epoch(run, trainer, quiet)  # its checkpoint is saved before the check below
            (requested,), _ = distributed.agree([float(interrupt.requested)], [])  # a Ctrl-C on any rank
            if requested:
                raise TrainingInterrupted(_resume_advice(run, trainer.progress))


def _run_epoch(run: RunSetup, trainer: _Trainer, quiet: bool, interrupt: DeferredInterrupt) -> None:
    """Train the rest of the epoch in progress, checkpointing as configured; on a Ctrl-C, checkpoint
    after the step in hand and raise TrainingInterrupted."""
    config, progress, world = run.config, trainer.progress, distributed.world()
    batches = EpochBatches(
        run.data.train,
        progress.epoch,
        config.run.seed,
        config.optim.batch_size,
        _augmentation(run),
        part=(world.rank, world.size),
    )
    loader = epoch_loader(batches, progress.step, config.data.workers, pin_memory=run.device.type == "cuda")
    bar = EpochBar(loader, len(batches) - progress.step, epoch_label(run, trainer, progress.epoch), quiet)
    autocast = autocast_for(run.device, config.run.precision)  # resolved by prepare_run
    epoch_clock = last = trainer.clock()
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
        now = trainer.clock()
        step_seconds = now - last  # loader, augmentation and step: what the budget pays
        trainer.step_seconds += step_seconds
        trainer.steps_timed += 1
        last = now
        # Rank 0 decides what depends on its clock; one all_reduce tells the others and sums the step.
        budget_spent = distributed.is_main() and bool(config.optim.time_budget)
        budget_spent = budget_spent and _budget_ends_epoch(run, trainer, step_seconds)
        due = distributed.is_main() and progress.step < len(batches) and _checkpoint_due(config, trainer)
        (loss_sum, correct, requested), (planned, budget_spent, due) = distributed.agree(
            [loss_sum, float(result.correct), float(interrupt.requested)],
            [float(progress.planned_steps), float(budget_spent), float(due)],
        )
        if int(planned) != progress.planned_steps:  # a rank told of rank 0's new plan
            progress.planned_steps = int(planned)
            _apply_plan(run, trainer)
        progress.epoch_correct += int(correct)
        if result.applied:
            progress.epoch_loss_sum += loss_sum
        bar.update(loss_sum / whole, correct / whole, whole)
        if trainer.lookahead is not None:  # after the budget's check: it may have moved the last step
            trainer.lookahead.step(
                run.model, progress.global_step, progress.planned_steps or trainer.plan.total_steps
            )
        if budget_spent:
            break  # this epoch ends early; _end_epoch still validates and saves it
        if requested and progress.step < len(batches):  # Ctrl-C (on any rank): this step is whole; stop
            # (after an epoch's last step, _fit stops once _end_epoch has validated and saved it)
            progress.epoch_seconds += trainer.clock() - epoch_clock
            bar.close()
            _checkpoint(run, trainer)
            raise TrainingInterrupted(_resume_advice(run, progress))
        if due:
            now = trainer.clock()
            progress.epoch_seconds += now - epoch_clock
            epoch_clock = now
            _checkpoint(run, trainer)
    bar.close()
    progress.epoch_seconds += trainer.clock() - epoch_clock


def _resume_advice(run: RunSetup, progress: Progress) -> str:
    """What TrainingInterrupted says: where the run stopped and the command that continues it."""
    return (
        f"interrupted at epoch {progress.epoch}, step {progress.step}; checkpoint saved in "
        f"{run.checkpoints}. Continue exactly where it stopped with:\n"
        f"  foveal train --resume {shlex.quote(str(run.run_dir))}"
    )


def _augmentation(run: RunSetup) -> Augmentation:
    config = run.config
    size = run.info.preprocessing.img_size
    return Augmentation(
        padding=config.augment.crop_padding if config.augment.crop_padding is not None else size // 8,
        flip=run.data.flip_safe if config.augment.hflip is None else config.augment.hflip,
        alternate_flips=config.augment.alternate_flips,
        auto_augment=config.augment.auto_augment,
        erase=config.augment.random_erase,
        mixup_alpha=config.augment.mixup_alpha,
        cutmix_alpha=config.augment.cutmix_alpha,
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


def _checkpoint_due(config: TrainConfig, trainer: _Trainer) -> bool:
    if (
        config.checkpoint.checkpoint_every_steps
        and trainer.progress.step % config.checkpoint.checkpoint_every_steps == 0
    ):
        return True
    minutes = config.checkpoint.checkpoint_every_minutes
    return bool(minutes) and trainer.clock() - trainer.last_save >= minutes * 60


def _checkpoint(run: RunSetup, trainer: _Trainer) -> None:
    """Rank 0 writes the training state (the model and optimizer are the same on every rank under
    DDP); every rank waits for the write, so none goes on, or ends, before it is on disk."""
    if distributed.is_main():
        save_checkpoint(
            run.checkpoints,
            run.model,
            trainer.optimizer,
            trainer.scheduler,
            trainer.progress,
            run.config.checkpoint.keep_checkpoints,
            ema=trainer.ema,
            lookahead=trainer.lookahead.state_dict() if trainer.lookahead is not None else None,
        )
    distributed.barrier()
    trainer.last_save = trainer.clock()


def _end_epoch(run: RunSetup, trainer: _Trainer, quiet: bool) -> None:
    """Validate, record, save last/best and a checkpoint; mark the run finished when it is.

    Under torchrun rank 0 does it alone, on every validation image (the others wait), so the figures
    are one process's; its progress (results, best epoch, the budget's plan, whether the run is
    finished) then becomes every rank's.
    """
    if distributed.is_main():
        _validate_and_record(run, trainer, quiet)
    trainer.progress = distributed.from_main(trainer.progress)
    if distributed.active() and trainer.progress.planned_steps:
        _apply_plan(run, trainer)
    _checkpoint(run, trainer)


def _validate_and_record(run: RunSetup, trainer: _Trainer, quiet: bool) -> None:
    """_end_epoch's work on the one writer: validation, results.csv, last/best weights, the decision
    whether the run is finished, and the next epoch's progress set up."""
    config, progress = run.config, trainer.progress
    n = min(len(run.data.train), progress.step * config.optim.batch_size)  # less when the budget cut it short
    epoch, seconds = progress.epoch, progress.epoch_seconds
    validation_started = trainer.clock()
    row = {
        "epoch": epoch,
        "train_loss": progress.epoch_loss_sum / n,
        "train_top1": progress.epoch_correct / n,
        "lr": trainer.optimizer.param_groups[0]["lr"],
        "seconds": seconds,
        "images_per_second": n / seconds,
        **_validate(run, trainer.model_to_keep(run.model)),
    }
    trainer.validation_seconds = trainer.clock() - validation_started
    progress.rows.append(row)
    progress.seen += n
    write_results(run.run_dir / "results.csv", progress.rows)
    info = ModelInfo(
        run.info.config,
        run.info.classes,
        run.info.preprocessing,
        {**run.info.extra, "epoch": epoch, "val_top1": row["val_top1"]},
    )
    kept = trainer.model_to_keep(run.model)
    save_model(run.run_dir / "weights" / "last.safetensors", kept, info)
    if config.optim.time_budget:
        # The schedule is laid out to end annealed, so the final model is the one kept; picking
        # an earlier epoch by a 2,000-image validation would select on noise.
        budget_spent = bool(progress.planned_steps) and progress.global_step >= progress.planned_steps
        keep = budget_spent
    else:
        keep = row["val_top1"] > progress.best_top1
    if math.isfinite(row["val_top1"]) and keep:  # NaN is never best
        progress.best_top1, progress.best_epoch = row["val_top1"], epoch
        save_model(run.run_dir / "weights" / "best.safetensors", kept, info)
    skipped = progress.epoch_skipped
    top_k = top_k_for(len(run.data.classes))
    say(
        f"{epoch_label(run, trainer, epoch)}: loss {row['train_loss']:.4f}, "
        f"train top-1 {row['train_top1']:.2%}, "
        f"val loss {row['val_loss']:.4f}, val top-1 {row['val_top1']:.2%}, "
        + (f"top-{top_k} {row['val_top5']:.2%}, " if shows_top_k(top_k, len(run.data.classes)) else "")
        + f"{seconds:.1f} s ({row['images_per_second']:.0f} img/s)"
        + (f", {skipped} non-finite steps skipped" if skipped else ""),
        quiet,
    )
    early = config.optim.patience is not None and epoch - progress.best_epoch >= config.optim.patience
    if early:
        say(
            f"early stop: no better val top-1 for {config.optim.patience} epochs "
            f"(best {progress.best_top1:.2%} at epoch {progress.best_epoch})",
            quiet,
        )
        append_event(run.run_dir, f"early stop after epoch {epoch}")
    if config.optim.time_budget:
        spent = bool(progress.planned_steps) and progress.global_step >= progress.planned_steps
        # Refine with this epoch's measured times; a resumed run keeps the plan it had, so it
        # takes the same steps as if it had never stopped.
        if not spent and not (trainer.resumed and progress.planned_steps):
            _replan(run, trainer)
        progress.finished = early or spent
    else:
        progress.finished = early or epoch >= config.optim.epochs
    progress.start_epoch(epoch + 1)


def _budget_ends_epoch(run: RunSetup, trainer: _Trainer, last_step_seconds: float) -> bool:
    """After a step under a time budget: make the first plan once calibrated, and say whether the
    epoch must end here because the plan is done or one more step would overrun the deadline."""
    progress, budget = trainer.progress, run.config.optim.time_budget
    if not progress.planned_steps and calibrated(trainer.steps_timed, trainer.step_seconds, budget):
        _replan(run, trainer)
    if progress.planned_steps and progress.global_step >= progress.planned_steps:
        return True  # the budget is spent
    if trainer.resumed and progress.planned_steps:
        return False  # a resumed run keeps the plan it had, so that it ends as if never stopped
    # Before the first plan too: a few slow steps (large images) or a long data load can use up the
    # budget before calibration ends. The next step is taken to last as long as the last one.
    if not past_deadline(_budget_clock(run, trainer), last_step_seconds):
        return False
    planned = f"of {progress.planned_steps}" if progress.planned_steps else "(before the first plan)"
    append_event(
        run.run_dir,
        f"steps ran slower than planned: stopped at step {progress.global_step} {planned} to keep "
        "the deadline",
    )
    progress.planned_steps = progress.global_step
    return True


def _replan(run: RunSetup, trainer: _Trainer) -> None:
    """Set the run's total step count so that it ends, evaluated and saved, when the budget does."""
    progress = trainer.progress
    clock = _budget_clock(run, trainer)
    progress.planned_steps = plan_total_steps(clock, progress.global_step, _steps_per_epoch(run))
    _apply_plan(run, trainer)


def _budget_clock(run: RunSetup, trainer: _Trainer) -> BudgetClock:
    """The budget and the times measured so far (validation estimated until one is timed)."""
    config = run.config
    step_seconds = trainer.step_seconds / max(1, trainer.steps_timed)
    val_images = len(run.data.val)
    epoch_val_images = min(val_images, config.epoch_val_limit or val_images)
    epoch_views = epoch_val_images * VIEW_COUNTS[config.epoch_val_views]  # forward passes per validation
    validation = trainer.validation_seconds or epoch_views * _evaluation_seconds_per_view(run, trainer)
    # The final evaluation reads every held-out image in each of the model's views, and the open-set
    # calibration's training images in one view each (rejection.FIT_IMAGES).
    final_views = val_images * run.info.preprocessing.view_count + min(len(run.data.train), FIT_IMAGES)
    final = validation * final_views / epoch_views
    elapsed = trainer.clock() - trainer.started
    return BudgetClock(config.optim.time_budget, elapsed, step_seconds, validation, final)


def _evaluation_seconds_per_view(run: RunSetup, trainer: _Trainer) -> float:
    """Seconds per forward pass of one held-out image on the evaluation path (full precision), timed
    once on one batch in one view before the first validation is: a training step's time says little
    of it (bf16 training against fp32 evaluation)."""
    if trainer.evaluation_seconds_per_view is None:
        sample = run.data.val.images[: run.config.run.eval_batch_size]
        started = trainer.clock()
        predict_logits(
            trainer.model_to_keep(run.model),
            sample,
            run.info.preprocessing.with_views("none"),
            device=run.device,
            batch_size=run.config.run.eval_batch_size,
        )
        trainer.evaluation_seconds_per_view = (trainer.clock() - started) / max(1, len(sample))
    return trainer.evaluation_seconds_per_view


def _apply_plan(run: RunSetup, trainer: _Trainer) -> None:
    # Warmup takes its configured epochs, but never more than a fifth of a short budget.
    total = trainer.progress.planned_steps
    trainer.plan.total_steps = total
    trainer.plan.warmup_steps = min(round(run.config.optim.warmup_epochs * _steps_per_epoch(run)), total // 5)


def _steps_per_epoch(run: RunSetup) -> int:
    return math.ceil(len(run.data.train) / run.config.optim.batch_size)


def _validate(run: RunSetup, model: nn.Module) -> dict[str, float]:
    """Loss, top-1 and top-5 on the validation images (an evenly spaced subset, if limited), in the
    config's `epoch_val_views`."""
    val, limit = run.data.val, run.config.epoch_val_limit
    if limit is not None:
        val = val.evenly_spaced(limit)
    preprocessing = run.info.preprocessing.with_views(run.config.epoch_val_views)
    result = evaluate(model, val, preprocessing, device=run.device, batch_size=run.config.run.eval_batch_size)
    return {"val_loss": result.loss, "val_top1": result.metrics.top1, "val_top5": result.metrics.top5}


def _final_evaluation(run: RunSetup, best_epoch: int, *, last_epoch: int) -> Evaluation:
    """Evaluate the best weights on every validation image, calibrate the model's open-set threshold
    on them (its class means and covariance on up to FIT_IMAGES training images) and save it with the
    weights (with last.safetensors too when the best epoch is the last, as under a time budget); write
    metrics.json and the confusion matrix (metrics.json last: its presence marks the run as finished)."""
    best = run.run_dir / "weights" / "best.safetensors"
    if not best.is_file():
        raise FovealError(
            f"no epoch of {run.run_dir} gave a finite validation accuracy, so there is no best "
            "model; lower --lr and check the images."
        )
    model, info = load_model(best, run.device)
    evaluation = evaluate(
        model,
        run.data.val,
        info.preprocessing,
        device=run.device,
        batch_size=run.config.run.eval_batch_size,
        data=run.data.description,
        model_file=best,
        epoch=best_epoch,
    )
    fit = run.data.train.evenly_spaced(FIT_IMAGES)  # the pooled features come from one view
    fit_outputs = predict_outputs(
        model,
        fit.images,
        info.preprocessing.with_views("none"),
        device=run.device,
        batch_size=run.config.run.eval_batch_size,
    )
    rejection = calibrate(evaluation.outputs, (fit_outputs, fit.labels))
    if rejection is not None:
        info.extra["rejection"] = rejection.to_dict()
        save_model(best, model, info)
        if last_epoch == best_epoch:  # the same weights: the threshold holds for them too
            save_model(best.with_name("last.safetensors"), model, info)
        evaluation.rejection = RejectionCount.of(rejection, evaluation.outputs)
    save_evaluation(evaluation, run.run_dir)
    return evaluation


__all__ = ["TrainResult", "TrainingDiverged", "TrainingInterrupted", "train"]
