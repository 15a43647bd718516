"""Re-planning a time budget as a run goes: the loop's measured times turned into budget.py's plan.

The first plan comes once the steps are calibrated, then one after every epoch (a resumed run keeps
the plan it had, so that it takes the same steps as if it had never stopped); after every step the
deadline guard may end the run early. Every time is read from the trainer's clock (clock.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from foveal.config import TrainConfig
from foveal.data.preprocess import VIEW_COUNTS
from foveal.predictor.inference import predict_logits
from foveal.predictor.rejection import FIT_IMAGES
from foveal.training.budget import BudgetClock, calibrated, past_deadline, plan_total_steps
from foveal.training.records import append_event
from foveal.training.setup import RunSetup
from foveal.training.state import Progress
from foveal.training.trainer import Trainer


@dataclass(frozen=True)
class EndViews:
    """Forward passes of a validation, and of the run's end, that the plan pays for."""

    epoch: int  # one per-epoch validation: its images in `epoch_val_views`
    final: int  # the final evaluation (every held-out image in the model's views) and the open-set fit


def end_views(config: TrainConfig, val_images: int, train_images: int, model_views: int) -> EndViews:
    """The forward passes of a per-epoch validation and of the end: the final evaluation reads every
    held-out image in each of the model's `model_views`, and the open-set calibration's training
    images in one view each (rejection.FIT_IMAGES)."""
    epoch_val_images = min(val_images, config.epoch_val_limit or val_images)
    epoch = epoch_val_images * VIEW_COUNTS[config.epoch_val_views]
    return EndViews(epoch, val_images * model_views + min(train_images, FIT_IMAGES))


def budget_clock(
    budget: float, elapsed: float, step_seconds: float, steps_timed: int, validation: float, views: EndViews
) -> BudgetClock:
    """What the plan is computed from: `step_seconds` in all over `steps_timed` steps, the seconds of
    one per-epoch `validation`, and the final evaluation scaled from it by its forward passes."""
    mean_step = step_seconds / max(1, steps_timed)
    return BudgetClock(budget, elapsed, mean_step, validation, validation * views.final / views.epoch)


def plan_spent(progress: Progress) -> bool:
    """Whether the run has taken every step its plan holds (never before a plan exists)."""
    return bool(progress.planned_steps) and progress.global_step >= progress.planned_steps


def budget_ends_epoch(run: RunSetup, trainer: Trainer, last_step_seconds: float) -> bool:
    """After a step under a time budget: make the first plan once calibrated, and say whether the
    epoch must end here because the plan is done or one more step would overrun the deadline."""
    progress, budget = trainer.progress, run.config.optim.time_budget
    if not progress.planned_steps and calibrated(trainer.steps_timed, trainer.step_seconds, budget):
        replan(run, trainer)
    if plan_spent(progress):
        return True  # the budget is spent
    if trainer.resumed and progress.planned_steps:
        return False  # a resumed run keeps the plan it had, so that it ends as if never stopped
    # Before the first plan too: a few slow steps (large images) or a long data load can use up the
    # budget before calibration ends. The next step is taken to last as long as the last one.
    if not past_deadline(measured_budget(run, trainer), last_step_seconds):
        return False
    planned = f"of {progress.planned_steps}" if progress.planned_steps else "(before the first plan)"
    append_event(
        run.run_dir,
        f"steps ran slower than planned: stopped at step {progress.global_step} {planned} to keep "
        "the deadline",
    )
    progress.planned_steps = progress.global_step
    return True


def budget_ends_run(run: RunSetup, trainer: Trainer) -> bool:
    """At an epoch's end under a time budget: whether the plan is spent; if not, the plan refined
    with this epoch's measured times (a resumed run keeps the plan it had)."""
    progress = trainer.progress
    spent = plan_spent(progress)
    if not spent and not (trainer.resumed and progress.planned_steps):
        replan(run, trainer)
    return spent


def replan(run: RunSetup, trainer: Trainer) -> None:
    """Set the run's total step count so that it ends, evaluated and saved, when the budget does."""
    progress = trainer.progress
    clock = measured_budget(run, trainer)
    progress.planned_steps = plan_total_steps(clock, progress.global_step, run.steps_per_epoch)
    apply_plan(run, trainer)


def measured_budget(run: RunSetup, trainer: Trainer) -> BudgetClock:
    """The budget and the times measured so far (validation estimated until one is timed)."""
    data = run.data
    views = end_views(run.config, len(data.val), len(data.train), run.info.preprocessing.view_count)
    validation = trainer.validation_seconds or views.epoch * evaluation_seconds_per_view(run, trainer)
    elapsed = trainer.clock.now() - trainer.started
    return budget_clock(
        run.config.optim.time_budget, elapsed, trainer.step_seconds, trainer.steps_timed, validation, views
    )


def evaluation_seconds_per_view(run: RunSetup, trainer: Trainer) -> float:
    """Seconds per forward pass of one held-out image on the evaluation path (full precision), timed
    once on one batch in one view before the first validation is: a training step's time says little
    of it (bf16 training against fp32 evaluation)."""
    if trainer.evaluation_seconds_per_view is None:
        sample = run.data.val.images[: run.config.run.eval_batch_size]
        started = trainer.clock.now()
        predict_logits(
            trainer.model_to_keep(run.model),
            sample,
            run.info.preprocessing.with_views("none"),
            device=run.device,
            batch_size=run.config.run.eval_batch_size,
        )
        trainer.evaluation_seconds_per_view = (trainer.clock.now() - started) / max(1, len(sample))
    return trainer.evaluation_seconds_per_view


def apply_plan(run: RunSetup, trainer: Trainer) -> None:
    """Lay the schedule over the planned steps. Warmup takes its configured epochs, but never more
    than a fifth of a short budget."""
    total = trainer.progress.planned_steps
    trainer.plan.total_steps = total
    trainer.plan.warmup_steps = min(round(run.config.optim.warmup_epochs * run.steps_per_epoch), total // 5)
