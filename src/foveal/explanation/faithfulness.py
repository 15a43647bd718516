"""Is a map faithful? Deletion and insertion curves (Petsiuk et al. 2018, RISE) against random maps.

Deletion: pixels are replaced by the data set's mean colour (or by a blurred copy of the image),
most relevant first, and the probability of the explained class is read after each step; a faithful
map makes it fall fast (low area under the curve). Insertion: starting from a blurred copy, the most
relevant pixels are put back first; a faithful map makes the probability rise fast (high area).

A random map of the same token grid, upsampled the same way, is the yardstick each method must beat.
The margin is measured per image (method minus random on the same image), so its standard error is
free of the large image-to-image spread that both share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from foveal.data.preprocess import TestTimeViews
from foveal.explanation.pixels import upsample
from foveal.explanation.time_limit import NO_LIMIT, TimeLimit
from foveal.predictor.inference import view_logits
from foveal.predictor.network import Network

DELETION_FILLS: tuple[str, ...] = ("mean", "blur")
CURVE_STEPS = 16  # points of a deletion or insertion curve after its start (each a forward pass)


@dataclass
class CurveScores:
    """Mean area under the deletion and insertion curves over the images, with standard errors."""

    method: str
    deletion_auc: float
    deletion_sem: float
    insertion_auc: float
    insertion_sem: float
    deletion_curve: list[float]  # mean probability after each step, from 0% to 100% of the pixels
    insertion_curve: list[float]
    deletion_vs_random: float = 0.0  # mean over images of (this method's AUC - random's AUC)
    deletion_vs_random_sem: float = 0.0
    insertion_vs_random: float = 0.0
    insertion_vs_random_sem: float = 0.0
    images: int = 0  # how many images the means are over

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def probability_curves(
    model: nn.Module,
    images: torch.Tensor,
    pixel_maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = CURVE_STEPS,
    batch_size: int = 256,
    deletion_fill: str = "mean",
    views: TestTimeViews = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion curves (B, steps + 1) for normalised images (B, C, H, W).

    `pixel_maps` (B, H, W) rank the pixels; step k has the top k/steps of them deleted (or inserted).
    A deleted pixel takes the data set's mean colour (`deletion_fill="mean"`; 0 in normalised space)
    or its value in a blurred copy ("blur": no sharp mean-coloured holes for the model to react to).
    Probabilities come from the one inference path, over the model's test-time `views`.
    """
    if deletion_fill not in DELETION_FILLS:
        raise ValueError(f"deletion_fill must be one of {DELETION_FILLS}, got {deletion_fill!r}")
    B, _, H, W = images.shape
    order = pixel_maps.reshape(B, -1).argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(H * W, device=order.device).expand(B, -1))
    rank = rank.reshape(B, 1, H, W)
    sigma = max(1.0, H / 8)
    kernel = 2 * math.ceil(2 * sigma) + 1
    blurred = TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    filler = blurred if deletion_fill == "blur" else torch.zeros_like(images)
    counts = [round(H * W * k / steps) for k in range(steps + 1)]
    deletion, insertion = [], []
    for count in counts:
        shown = rank < count  # (B, 1, H, W): the `count` most relevant pixels
        deleted, inserted = torch.where(shown, filler, images), torch.where(shown, images, blurred)
        deletion.append(_class_probability(model, deleted, targets, batch_size, views))
        insertion.append(_class_probability(model, inserted, targets, batch_size, views))
    return torch.stack(deletion, dim=1), torch.stack(insertion, dim=1)


def _class_probability(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int, views: TestTimeViews
) -> torch.Tensor:
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = view_logits(model, images[start : start + batch_size], views)
        probs = F.softmax(logits, dim=1)
        out.append(probs.gather(1, targets[start : start + batch_size, None]).squeeze(1))
    return torch.cat(out)


def area_under(curves: torch.Tensor) -> torch.Tensor:
    """(B, steps + 1) curves over [0, 1] -> (B,) areas, by the trapezoid rule."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


def faithfulness(
    network: Network,
    images: torch.Tensor,
    methods: list[str],
    *,
    steps: int = CURVE_STEPS,
    batch_size: int = 64,
    seed: int = 0,
    deletion_fill: str = "mean",
    views: TestTimeViews = "none",
    limit: TimeLimit = NO_LIMIT,
) -> list[CurveScores]:
    """Deletion/insertion scores of each method and of random maps ("random") on normalised images.

    Every method explains the class the model predicts over its test-time `views` (the one inference
    path), and the curves read that class's probability the same way; the random maps have the
    same token grid as the first method's maps and are upsampled the same way. `deletion_fill` is
    "mean" or "blur" (see `probability_curves`). Images go `batch_size` at a time, every method on
    each batch, while `limit` leaves time for another: the scores are of the images measured (their
    `images`), none when not one batch fitted.
    """
    network.eval()
    H, W = images.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    names = [*methods, "random"]
    curves: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {m: ([], []) for m in names}
    for part in limit.chunks(images.shape[0], batch_size):
        batch = images[part]
        with torch.no_grad():
            targets = view_logits(network, batch, views).argmax(dim=1)
        grid = None
        for method in names:
            if method == "random":  # drawn batch after batch: the same maps whatever `limit` allows
                maps = torch.rand((batch.shape[0], *grid), generator=generator).to(batch.device)
            else:
                maps = network.token_maps(batch, method, targets).maps
                grid = grid or tuple(maps.shape[-2:])
            pixel_maps = upsample(maps, (H, W))
            d, i = probability_curves(
                network, batch, pixel_maps, targets, steps, deletion_fill=deletion_fill, views=views
            )
            curves[method][0].append(d)
            curves[method][1].append(i)
    if not curves["random"][0]:
        return []
    joined = {m: (torch.cat(d), torch.cat(i)) for m, (d, i) in curves.items()}
    return [_summarise(m, *joined[m], *joined["random"]) for m in names]


def _summarise(
    method: str,
    deletion: torch.Tensor,
    insertion: torch.Tensor,
    random_deletion: torch.Tensor,
    random_insertion: torch.Tensor,
) -> CurveScores:
    """Scores from per-image curves (N, steps + 1) of `method` and of the random maps."""
    d_auc, i_auc = area_under(deletion), area_under(insertion)
    d_margin, i_margin = d_auc - area_under(random_deletion), i_auc - area_under(random_insertion)
    return CurveScores(
        method,
        float(d_auc.mean()),
        standard_error(d_auc),
        float(i_auc.mean()),
        standard_error(i_auc),
        [round(float(v), 4) for v in deletion.mean(dim=0)],
        [round(float(v), 4) for v in insertion.mean(dim=0)],
        float(d_margin.mean()),
        standard_error(d_margin),
        float(i_margin.mean()),
        standard_error(i_margin),
        deletion.shape[0],
    )


def standard_error(values: torch.Tensor) -> float:
    """The standard error of the mean of `values` (0 for a single value)."""
    return float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else 0.0


def faithfulness_rows(scores: list[CurveScores]) -> tuple[list[str], list[list[str]]]:
    """The header and one row per method: its areas and its per-image margin over the random maps
    (± is the standard error; a margin of several standard errors is a clear one)."""
    header = [
        "method",
        "deletion AUC (lower: better)",
        "vs random",
        "insertion AUC (higher: better)",
        "vs random",
    ]
    rows = []
    for s in scores:
        deletion_margin = insertion_margin = ""
        if s.method != "random":
            deletion_margin = f"{s.deletion_vs_random:+.3f} ± {s.deletion_vs_random_sem:.3f}"
            insertion_margin = f"{s.insertion_vs_random:+.3f} ± {s.insertion_vs_random_sem:.3f}"
        rows.append(
            [
                s.method,
                f"{s.deletion_auc:.3f} ± {s.deletion_sem:.3f}",
                deletion_margin,
                f"{s.insertion_auc:.3f} ± {s.insertion_sem:.3f}",
                insertion_margin,
            ]
        )
    return header, rows


def faithfulness_table(scores: list[CurveScores]) -> str:
    """`faithfulness_rows` as a markdown table."""
    header, rows = faithfulness_rows(scores)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
