"""The report's pointing-game section: does the model's map point at the object of the class asked
about? (explanation/pointing.py; the benchmark is benchmarks/pointing_game.py.)"""

from __future__ import annotations

from collections.abc import Callable

from foveal.data.imageset import ImageSet
from foveal.explanation.pointing import CHANCE, make_mosaics, pointing_game
from foveal.explanation.report_plan import MIN_POINTING_MOSAICS, ReportPlan
from foveal.messages import say
from foveal.predictor.classifier import Classifier
from foveal.reporting import page as html

TITLE = "Does the map point at the object?"
POINTING_BATCH = 32  # mosaics a chunk holds at most


def pointing_section(
    classifier: Classifier, held_out: ImageSet, plan: ReportPlan, left_out: Callable[[], str], quiet: bool
) -> str:
    """The score of each of the model's methods on the plan's count of mosaics of `held_out`, or on as
    many as its limit leaves time for (fewer than the floor: `left_out()`, the section that says how
    to have it); "" where the held-out images have fewer than 2 classes."""
    if len(held_out) == 0 or len(held_out.labels.unique()) < 2:
        return ""
    if plan.pointing_mosaics == 0:
        return left_out()
    say(f"report: the pointing game on {plan.pointing_mosaics} mosaics of held-out images", quiet)
    games = make_mosaics(held_out.images, held_out.labels, plan.pointing_mosaics)
    batch_size = plan.chunk(plan.pointing_mosaics, POINTING_BATCH)
    scores = pointing_game(classifier, games, batch_size=batch_size, limit=plan.limit)
    mosaics = scores[0].mosaics if scores else 0
    if mosaics < min(MIN_POINTING_MOSAICS, plan.pointing_mosaics):
        return left_out()
    best = max(scores, key=lambda s: s.score)
    rows = [[s.method, f"{s.score:.3f}", f"± {s.standard_error:.3f}"] for s in scores]
    return html.section(
        TITLE,
        html.paragraph(
            f"The grid pointing game on {mosaics} mosaics: four held-out images shrunk into a 2 x 2 "
            "mosaic at the model's input size, one of the class asked about and three of other classes. "
            "Each method's map explains that class; the score is the share of the map's positive mass "
            f"inside its image (1.0 points only at it; {CHANCE:.2f} is chance, and what a map that "
            f"shows where the model looks whatever the class scores). Best here: {best.method}, "
            f"{best.score:.2f}."
        ),
        html.table(["method", "score", "standard error"], rows),
    )
