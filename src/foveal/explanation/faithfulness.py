"""Is a map faithful? Deletion and insertion curves (Petsiuk et al. 2018, RISE) against random maps.

Deletion: pixels are replaced by the data set's mean colour, most relevant first, and the
probability of the explained class is read after each step; a faithful map makes it fall fast
(low area under the curve). Insertion: starting from a blurred copy, the most relevant pixels are
put back first; a faithful map makes the probability rise fast (high area). A random map of the
same token grid, upsampled the same way, is the yardstick each method must beat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from foveal.explanation.maps import compute_maps
from foveal.explanation.pixels import upsample


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

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def probability_curves(
    model: nn.Module,
    images: torch.Tensor,
    pixel_maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 16,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion curves (B, steps + 1) for normalised images (B, C, H, W).

    `pixel_maps` (B, H, W) rank the pixels; step k has the top k/steps of them deleted (or inserted).
    In normalised space the data set's mean colour is 0, so deleting a pixel sets it to 0.
    """
    B, _, H, W = images.shape
    order = pixel_maps.reshape(B, -1).argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(H * W, device=order.device).expand(B, -1))
    rank = rank.reshape(B, 1, H, W)
    sigma = max(1.0, H / 8)
    kernel = 2 * math.ceil(2 * sigma) + 1
    blurred = TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    counts = [round(H * W * k / steps) for k in range(steps + 1)]
    deletion, insertion = [], []
    for count in counts:
        shown = rank < count  # (B, 1, H, W): the `count` most relevant pixels
        deletion.append(_class_probability(model, images * ~shown, targets, batch_size))
        insertion.append(_class_probability(model, torch.where(shown, images, blurred), targets, batch_size))
    return torch.stack(deletion, dim=1), torch.stack(insertion, dim=1)


def _class_probability(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> torch.Tensor:
    out = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size]).float()
        probs = F.softmax(logits, dim=1)
        out.append(probs.gather(1, targets[start : start + batch_size, None]).squeeze(1))
    return torch.cat(out)


def area_under(curves: torch.Tensor) -> torch.Tensor:
    """(B, steps + 1) curves over [0, 1] -> (B,) areas, by the trapezoid rule."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


def faithfulness(
    model: nn.Module,
    images: torch.Tensor,
    methods: list[str],
    *,
    steps: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> list[CurveScores]:
    """Deletion/insertion scores of each method and of random maps ("random") on normalised images.

    Every method explains the model's predicted class; the random maps have the same token grid as
    the first method's maps and are upsampled the same way.
    """
    model.eval()
    H, W = images.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    scores, grid = [], None
    for method in [*methods, "random"]:
        deletion, insertion = [], []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            if method == "random":
                logits = model(batch)
                targets = logits.argmax(dim=1)
                maps = torch.rand((batch.shape[0], *grid), generator=generator).to(batch.device)
            else:
                token_maps = compute_maps(model, batch, method)
                maps, targets, grid = token_maps.maps, token_maps.targets, tuple(token_maps.maps.shape[-2:])
            d, i = probability_curves(model, batch, upsample(maps, (H, W)), targets, steps)
            deletion.append(d)
            insertion.append(i)
        scores.append(_summarise(method, torch.cat(deletion), torch.cat(insertion)))
    return scores


def _summarise(method: str, deletion: torch.Tensor, insertion: torch.Tensor) -> CurveScores:
    d_auc, i_auc = area_under(deletion), area_under(insertion)
    return CurveScores(
        method,
        float(d_auc.mean()),
        _standard_error(d_auc),
        float(i_auc.mean()),
        _standard_error(i_auc),
        [round(float(v), 4) for v in deletion.mean(dim=0)],
        [round(float(v), 4) for v in insertion.mean(dim=0)],
    )


def _standard_error(values: torch.Tensor) -> float:
    return float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else 0.0


def faithfulness_table(scores: list[CurveScores]) -> str:
    """A markdown table: each method's areas and how far it beats the random maps."""
    random = next(s for s in scores if s.method == "random")
    lines = [
        "| method | deletion AUC (lower: better) | vs random | insertion AUC (higher: better) | vs random |",
        "|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.method} | {s.deletion_auc:.3f} ± {s.deletion_sem:.3f} | "
            f"{s.deletion_auc - random.deletion_auc:+.3f} | {s.insertion_auc:.3f} ± {s.insertion_sem:.3f} | "
            f"{s.insertion_auc - random.insertion_auc:+.3f} |"
        )
    return "\n".join(lines)
