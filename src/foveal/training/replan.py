"""Re-planning a time budget as a run goes: the loop's measured times turned into budget.py's plan.

The first plan comes once the steps are calibrated, then one after every epoch (a resumed run keeps
the plan it had, so that it takes the same steps as if it had never stopped); after every step the
deadline guard may end the run early. Every time is read from the trainer's clock (clock.py). The
report that follows the run is planned from the same measured times (explanation/report_plan.py):
its time is kept in every plan, and at the end it takes what is left.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from foveal.config import TrainConfig
from foveal.data.preprocess import VIEW_COUNTS
from foveal.explanation.report_plan import ReportCosts, ReportPlan, plan_report, report_costs, report_reserve
from foveal.explanation.time_limit import TimeLimit
from foveal.models.maps import available_methods
from foveal.predictor.inference import predict_logits
from foveal.predictor.rejection import FIT_IMAGES
from foveal.training import distributed
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
    budget: float,
    elapsed: float,
    step_seconds: float,
    steps_timed: int,
    validation: float,
    views: EndViews,
    report: float = 0.0,
) -> BudgetClock:
    """What the plan is computed from: `step_seconds` in all over `steps_timed` steps, the seconds of
    one per-epoch `validation`, the final evaluation scaled from it by its forward passes, and the
    `report`'s seconds."""
    mean_step = step_seconds / max(1, steps_timed)
    final = validation * views.final / views.epoch
    return BudgetClock(budget, elapsed, mean_step, validation, final, report)


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
    budget = run.config.optim.time_budget
    views, validation = measured_validation(run, trainer)
    report = 0.0
    if run.config.run.report:
        report = report_reserve(budget, measured_report_costs(run, trainer), len(run.data.val))
    elapsed = trainer.clock.now() - trainer.started
    return budget_clock(budget, elapsed, trainer.step_seconds, trainer.steps_timed, validation, views, report)


def measured_validation(run: RunSetup, trainer: Trainer) -> tuple[EndViews, float]:
    """The forward passes of a validation and of the end, and the seconds of one per-epoch
    validation: the last one timed, or estimated until one is."""
    data = run.data
    views = end_views(run.config, len(data.val), len(data.train), run.info.preprocessing.view_count)
    return views, trainer.validation_seconds or views.epoch * evaluation_seconds_per_view(run, trainer)


def measured_report_costs(run: RunSetup, trainer: Trainer) -> ReportCosts:
    """What the run's report will cost: its forward passes at the validation's measured seconds per
    image and view, with the map methods of the kept model (probed once, on one blank image)."""
    views, validation = measured_validation(run, trainer)
    if trainer.report_methods is None:
        trainer.report_methods = available_methods(trainer.model_to_keep(run.model))
    view_count = run.info.preprocessing.view_count
    return report_costs(validation / views.epoch, view_count, trainer.report_methods)


def end_report_plan(run: RunSetup, trainer: Trainer) -> ReportPlan:
    """At the run's end, saved and evaluated: what its report explains in the time the budget has
    left (without a budget, the whole report; on a rank that writes none, the plan is not read)."""
    budget = run.config.optim.time_budget
    if not budget or not run.config.run.report or not distributed.is_main():
        return ReportPlan()
    left = budget - (trainer.clock.now() - trainer.started)
    costs = measured_report_costs(run, trainer)
    plan = plan_report(left, costs, len(run.data.val))
    # The sections stop when only the page's own seconds are left, however slow the machine has become.
    return dataclasses.replace(plan, limit=TimeLimit.after(left - costs.fixed))


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
