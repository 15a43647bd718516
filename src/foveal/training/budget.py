"""Training for a time budget: how many steps fit before the deadline.

The schedule (warmup, cosine decay) is laid out over a step count, so that the model is fully
annealed when time is up. With `--time`, that count comes from the measured time per step and per
validation: first after CALIBRATION_STEPS steps, then again after every epoch, keeping the
evaluation and saving at the end inside the budget. Steps that slow down between two plans (another
process takes the cores) end the run early instead of late: the loop stops as soon as what is left
of the budget is only the end's reserve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CALIBRATION_STEPS = 20  # steps timed before the first plan (a few seconds on a CPU)
FINISH_SECONDS = 5.0  # reserved for the final evaluation's overheads: loading, plotting, writing


@dataclass
class BudgetClock:
    """What the plan is computed from (seconds, measured by the loop)."""

    budget: float  # the whole budget, from the command's start
    elapsed: float  # spent so far, data loading included
    step_seconds: float  # mean time of one training step so far
    validation_seconds: float  # time of one per-epoch validation pass (measured, or estimated)
    final_seconds: float  # time of the final evaluation on every held-out image (estimated)


def end_reserve(clock: BudgetClock) -> float:
    """Seconds kept for the end of the run: the last validation, the final evaluation, saving."""
    return clock.validation_seconds + clock.final_seconds + FINISH_SECONDS


def plan_total_steps(clock: BudgetClock, steps_done: int, steps_per_epoch: int) -> int:
    """The total step count that spends the rest of the budget.

    Each epoch of steps_per_epoch steps also pays one validation, and the end pays the whole
    validation of the last, usually partial, epoch, the final evaluation and FINISH_SECONDS.
    Never fewer than steps_done + 1.
    """
    remaining = clock.budget - clock.elapsed - end_reserve(clock)
    per_step = clock.step_seconds + clock.validation_seconds / steps_per_epoch
    return max(steps_done + 1, steps_done + math.floor(max(0.0, remaining) / per_step))


def estimate_validation_seconds(val_images: int, batch_size: int, step_seconds: float) -> float:
    """Before the first validation is timed: a forward pass costs about a third of a training step."""
    return val_images / batch_size * step_seconds / 3.0
