"""Training for a time budget: how many steps fit before the deadline.

The schedule (warmup, cosine decay) is laid out over a step count, so that the model is fully
annealed when time is up. With `--time`, that count comes from the measured time per step and per
validation: first once calibration is over (CALIBRATION_STEPS steps, or fewer slow ones that took
CALIBRATION_SHARE of the budget), then again after every epoch, keeping the evaluation and saving at
the end inside the budget. From the first step on, before a plan exists as after it, the loop stops
as soon as one more step would leave less than the end's reserve: steps that slow down between two
plans (another process takes the cores), or that are slow from the start (large images), end the
run early instead of late. With a report to write, its time is kept too (explanation/report_plan.py):
the budget holds for the whole command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CALIBRATION_STEPS = 20  # steps timed before the first plan (a few seconds on a CPU)...
CALIBRATION_SHARE = 0.03  # ...or fewer, once they have taken this share of the budget (slow steps)
FINISH_SECONDS = 5.0  # reserved for the final evaluation's overheads: loading, plotting, writing
# The final evaluation is estimated from the per-epoch validation's seconds per forward pass, and ran
# slower per pass than that: 139 s against 129.5 estimated for a 60-minute run's six views and the
# open-set fit (hybrid-airbench, AMD EPYC; the run ended 5.4 s past its budget). Reserved with room.
FINAL_EVALUATION_MARGIN = 1.15


@dataclass
class BudgetClock:
    """What the plan is computed from (seconds, measured by the loop)."""

    budget: float  # the whole budget, from the command's start
    elapsed: float  # spent so far, data loading included
    step_seconds: float  # mean time of one training step so far
    validation_seconds: float  # time of one per-epoch validation pass (measured, or estimated)
    final_seconds: float  # time of the final evaluation on every held-out image (estimated)
    report_seconds: float = 0.0  # time of report.html, written after the run (estimated; 0: none)


def calibrated(steps_timed: int, seconds_timed: float, budget: float) -> bool:
    """Whether the steps timed so far are enough for a first plan: CALIBRATION_STEPS of them, or at
    least one once they have taken CALIBRATION_SHARE of the `budget` (all in seconds)."""
    if steps_timed < 1:
        return False
    return steps_timed >= CALIBRATION_STEPS or seconds_timed >= CALIBRATION_SHARE * budget


def end_reserve(clock: BudgetClock) -> float:
    """Seconds kept for the end of the run: the last validation, the final evaluation, saving, and
    the report that follows."""
    final = clock.final_seconds * FINAL_EVALUATION_MARGIN + FINISH_SECONDS
    return clock.validation_seconds + final + clock.report_seconds


def past_deadline(clock: BudgetClock, next_step_seconds: float) -> bool:
    """Whether one more step of `next_step_seconds` would eat into the end's reserve."""
    return clock.elapsed + next_step_seconds + end_reserve(clock) >= clock.budget


def plan_total_steps(clock: BudgetClock, steps_done: int, steps_per_epoch: int) -> int:
    """The total step count that spends the rest of the budget.

    Each epoch of steps_per_epoch steps also pays one validation, and the end pays the whole
    validation of the last, usually partial, epoch, the final evaluation, FINISH_SECONDS and the
    report. One step is kept in hand, so that a last step a little slower than the mean does not
    trip `past_deadline` and end the run a step short of its plan. Never fewer than steps_done + 1.
    """
    remaining = clock.budget - clock.elapsed - end_reserve(clock) - clock.step_seconds
    per_step = clock.step_seconds + clock.validation_seconds / steps_per_epoch
    return max(steps_done + 1, steps_done + math.floor(max(0.0, remaining) / per_step))
