"""How much explaining a run's report can afford under a time budget: how many of the worst mistakes
it explains, and on how many held-out images it measures the maps' faithfulness.

Both cost forward passes of the model, which a run has timed by its end (its validations, in seconds
per image and view), so they are counted here in passes: explaining one image takes its labels in
every test-time view and one map; measuring one image's faithfulness takes, for each method and the
random maps, the predicted class, the map, and a deletion and an insertion curve of CURVE_STEPS + 1
points in every view (faithfulness.py). The figures and the page cost about the same on any data.

Under `--time` a run keeps the report's time out of training (training/replan.py): the fixed part,
and at most REPORT_SHARE of the budget for the explaining sections. At its end the report takes as many
images as the time then left affords, and its sections stop in time if the machine has turned slower
(time_limit.py); a section that cannot have even its floor is left out, with a hint naming
`foveal report RUN`, which has no budget and writes it whole. Without a budget the
report is whole: WORST_MISTAKES and FAITHFULNESS_IMAGES. This module sits below training and
reporting so that both read the one plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from foveal.explanation.faithfulness import CURVE_STEPS
from foveal.explanation.time_limit import NO_LIMIT, TimeLimit
from foveal.explanation.workflow import default_method

WORST_MISTAKES = 12  # explained in a whole report: two rows of the figure
POINTING_MOSAICS = 100  # 2 x 2 mosaics of held-out images the pointing game is played on (pointing.py)
FAITHFULNESS_IMAGES = 100  # evenly spaced held-out images the faithfulness is measured on, in a whole report
MIN_WORST_MISTAKES = 4  # fewer say little about what the model confuses: left to `foveal report`
MIN_FAITHFULNESS_IMAGES = 10  # fewer leave the margins over random maps standard errors too wide to read
MIN_POINTING_MOSAICS = 20  # fewer leave a score's standard error near 0.05, a fifth of chance
REPORT_SHARE = 0.1  # of a budget, at most, kept from training for the explaining sections
# Loading the model, seven figures and the page, whatever the data: 4.6 s with the command's exit
# after `--time 40s` on 224-px photos (tests/test_report_plan.py, 2-core CPU).
REPORT_FIXED_SECONDS = 5.0
# The passes are costed at the validations' seconds per image and view, but the curves' passes ran
# slower than that on 224-px photos: 1.44x and 1.59x (hybrid-airbench-half, 20 images in 2 views,
# 2-core CPU shared with other jobs; 0.44x and 0.57x at 64 px, where per-call overheads dominate).
# Reserved with room above that, as the final evaluation is (training/budget.py).
REPORT_MARGIN = 2.0
# Forward passes of one image for one map: one explained pass, and for the gradient methods a backward
# pass too (about twice a forward's work). Random maps are drawn, not computed.
# Under a limit a section goes in about this many chunks: each is timed, and the next starts only if it
# would end in time, so a slowdown at the end costs at most about an eighth of the section's planned time.
CHUNKS_UNDER_A_LIMIT = 8
MAP_PASSES = {"pool": 1.0, "rollout": 1.0, "grad-rollout": 3.0, "gradcam": 3.0, "random": 0.0}


@dataclass(frozen=True)
class ReportPlan:
    """At most how many images each explaining section of a report uses; 0 leaves it to `foveal report`.
    Under a budget the sections also stop at `limit`, the time the page must be written by, whatever
    the plan said: a machine slower at the end than when it was measured costs images, not time."""

    worst_mistakes: int = WORST_MISTAKES
    faithfulness_images: int = FAITHFULNESS_IMAGES
    pointing_mosaics: int = POINTING_MOSAICS
    limit: TimeLimit = field(default=NO_LIMIT, compare=False)

    def chunk(self, count: int, most: int) -> int:
        """How many of a section's `count` images to take at a time: `most` without a limit; under one,
        an eighth of them (at most `most`), so that a chunk that runs past its estimate costs little."""
        if self.limit.deadline is None:
            return most
        return max(1, min(most, math.ceil(count / CHUNKS_UNDER_A_LIMIT)))


@dataclass(frozen=True)
class ReportCosts:
    """Seconds a report's parts take on one run's model and machine, REPORT_MARGIN included."""

    fixed: float  # the model loaded, the figures drawn, the page written
    per_mistake: float  # one of the worst mistakes explained
    per_faithfulness_image: float  # one image's deletion and insertion curves, every method and random
    per_pointing_mosaic: float = 0.0  # one mosaic's map of every method

    def seconds(self, plan: ReportPlan) -> float:
        """The whole report's seconds under `plan`."""
        return (
            self.fixed
            + plan.worst_mistakes * self.per_mistake
            + plan.faithfulness_images * self.per_faithfulness_image
            + plan.pointing_mosaics * self.per_pointing_mosaic
        )


def explanation_passes(methods: Sequence[str], views: int) -> float:
    """Forward passes of one image explained by the report: its labels in `views` views, one map of
    the default method among the model's `methods`."""
    return views + MAP_PASSES[default_method(methods)]


def faithfulness_passes(methods: Sequence[str], views: int, steps: int = CURVE_STEPS) -> float:
    """Forward passes of one image's faithfulness: for each of `methods` and the random maps, the
    predicted class and 2 curves of `steps` + 1 points, each in `views` views, and the map."""
    return sum(views * (1 + 2 * (steps + 1)) + MAP_PASSES[method] for method in [*methods, "random"])


def pointing_passes(methods: Sequence[str]) -> float:
    """Forward passes of one pointing-game mosaic: a map of its target class by each of `methods`."""
    return sum(MAP_PASSES[method] for method in methods)


def report_costs(seconds_per_view: float, views: int, methods: Sequence[str]) -> ReportCosts:
    """What a report costs for a model whose evaluation takes `seconds_per_view` per image and view
    (measured by the run), seen in `views` test-time views, with map `methods`."""
    seconds_per_pass = seconds_per_view * REPORT_MARGIN
    return ReportCosts(
        REPORT_FIXED_SECONDS,
        explanation_passes(methods, views) * seconds_per_pass,
        faithfulness_passes(methods, views) * seconds_per_pass,
        pointing_passes(methods) * seconds_per_pass,
    )


def plan_report(seconds: float, costs: ReportCosts, held_out: int) -> ReportPlan:
    """The most of each explaining section that fits in `seconds` for the whole report: first the
    worst mistakes (a few passes each), then the pointing game (a map per method a mosaic), then the
    faithfulness with what is left; neither more than the `held_out` images (the mosaics are drawn
    from them, any number). A section that cannot have its floor gets 0."""
    left = seconds - costs.fixed
    mistakes = _fit(left, costs.per_mistake, min(WORST_MISTAKES, held_out), MIN_WORST_MISTAKES)
    left -= mistakes * costs.per_mistake
    mosaics = _fit(left, costs.per_pointing_mosaic, POINTING_MOSAICS, MIN_POINTING_MOSAICS)
    left -= mosaics * costs.per_pointing_mosaic
    images = _fit(
        left, costs.per_faithfulness_image, min(FAITHFULNESS_IMAGES, held_out), MIN_FAITHFULNESS_IMAGES
    )
    return ReportPlan(mistakes, images, mosaics)


def report_reserve(budget: float, costs: ReportCosts, held_out: int) -> float:
    """Seconds a run of `budget` seconds keeps from training for its report: the fixed part, and the
    explaining sections at the most that REPORT_SHARE of the budget affords."""
    return costs.seconds(plan_report(costs.fixed + REPORT_SHARE * budget, costs, held_out))


def _fit(seconds: float, each: float, most: int, floor: int) -> int:
    """How many things of `each` seconds fit in `seconds`, up to `most`; 0 when fewer than the
    `floor` (or than `most`, when it is lower) fit."""
    count = most if each <= 0 else min(most, math.floor(max(0.0, seconds) / each))
    return count if count >= min(floor, most) else 0
