"""The grid pointing game (Böhle et al., CVPR 2022, "B-cos networks"): does a map point at the object
of the class it explains?

Four held-out images, each shrunk into one cell of a 2 x 2 mosaic at the model's input size; one cell
holds the target class and the other three hold other classes. The map explaining the target class
scores the share of its positive mass that falls inside the target's cell: 1.0 points only at it,
0.25 is what a map blind to the class scores on average (a uniform map, or any map of a method that
ignores the class when the four cells look alike).

    mosaics = make_mosaics(images, labels, count=500)     # uint8 (M, 3, S, S), cells and classes
    scores = pointing_game(classifier, mosaics)            # one PointingScore per method
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from foveal.errors import ConfigError
from foveal.explanation.faithfulness import standard_error
from foveal.explanation.pixels import upsample
from foveal.explanation.time_limit import NO_LIMIT, TimeLimit
from foveal.predictor.classifier import Classifier

CELLS_PER_SIDE = 2  # a 2 x 2 mosaic: chance is a quarter
CHANCE = 1 / CELLS_PER_SIDE**2


@dataclass(frozen=True)
class Mosaics:
    images: torch.Tensor  # (M, 3, S, S) uint8, each a 2 x 2 mosaic of held-out images
    cells: torch.Tensor  # (M,) the target's cell, row-major: 0 top-left, 1 top-right, 2, 3
    targets: torch.Tensor  # (M,) the class the target cell holds; no other cell holds it


@dataclass(frozen=True)
class PointingScore:
    method: str
    score: float  # mean share of the map's positive mass inside the target's cell
    standard_error: float
    mosaics: int

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "score": round(self.score, 4),
            "standard_error": round(self.standard_error, 4),
            "mosaics": self.mosaics,
        }


def make_mosaics(images: torch.Tensor, labels: torch.Tensor, count: int, *, seed: int = 0) -> Mosaics:
    """`count` mosaics of the uint8 `images` (N, 3, S, S) with class `labels` (N,): each draws a target
    class, one image of it and three images of other classes (three different classes when there are
    four or more), and places the target in a random cell. Each image is shrunk to its cell with
    antialiasing, so the mosaic has the model's input size."""
    classes = labels.unique().tolist()
    if len(classes) < 2:
        raise ConfigError(
            f"the pointing game needs images of at least 2 classes, got {len(classes)}; "
            "give it a held-out set with several classes."
        )
    generator = torch.Generator().manual_seed(seed)
    by_class = {c: (labels == c).nonzero().flatten() for c in classes}
    size = images.shape[-1]
    mosaics = torch.empty((count, 3, size, size), dtype=torch.uint8)
    cells = torch.randint(0, CELLS_PER_SIDE**2, (count,), generator=generator)
    targets = torch.empty(count, dtype=torch.long)
    for m in range(count):
        target = classes[int(torch.randint(len(classes), (1,), generator=generator))]
        others = [c for c in classes if c != target]
        order = torch.randperm(len(others), generator=generator).tolist()
        # three different other classes where there are enough of them, else repeats
        fillers = [others[order[i % len(others)]] for i in range(CELLS_PER_SIDE**2 - 1)]
        chosen = fillers[: int(cells[m])] + [target] + fillers[int(cells[m]) :]
        picks = [_pick(by_class[c], generator) for c in chosen]
        mosaics[m] = _tile(images[picks], size)
        targets[m] = target
    return Mosaics(mosaics, cells, targets)


def pointing_game(
    classifier: Classifier,
    mosaics: Mosaics,
    methods: Sequence[str] | None = None,
    *,
    batch_size: int = 32,
    limit: TimeLimit = NO_LIMIT,
) -> list[PointingScore]:
    """Each of `methods` (default: every method the model has) explains the target class of every
    mosaic; its score is the mean share of the pixel map's positive mass inside the target's cell.
    Mosaics go `batch_size` at a time, every method on each batch, while `limit` leaves time for
    another: the scores are of the mosaics played (their `mosaics`), none when not one batch fitted."""
    network, preprocessing = classifier.network, classifier.info.preprocessing
    methods = list(methods or network.methods)
    shares: dict[str, list[torch.Tensor]] = {method: [] for method in methods}
    was_training = network.training
    network.eval()
    try:
        for part in limit.chunks(len(mosaics.images), batch_size):
            batch = preprocessing.normalize(mosaics.images[part].to(classifier.device))
            for method in methods:
                maps = network.token_maps(batch, method, mosaics.targets[part]).maps.detach().cpu()
                pixel_maps = upsample(maps, tuple(batch.shape[-2:]))  # (B, S, S) from (B, h, w)
                shares[method].append(cell_shares(pixel_maps, mosaics.cells[part]))
    finally:
        network.train(was_training)
    if not shares[methods[0]]:
        return []
    played = {method: torch.cat(values) for method, values in shares.items()}
    return [PointingScore(m, float(v.mean()), standard_error(v), v.numel()) for m, v in played.items()]


def cell_shares(pixel_maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(M,) share of each map's positive mass (M, S, S) inside its cell (row-major in the 2 x 2 grid);
    a map with no positive mass points nowhere and scores 0."""
    positive = pixel_maps.clamp_min(0)
    size_h, size_w = positive.shape[-2:]
    half_h, half_w = size_h // CELLS_PER_SIDE, size_w // CELLS_PER_SIDE
    quadrants = torch.stack(
        [
            positive[:, :half_h, :half_w].sum(dim=(1, 2)),
            positive[:, :half_h, half_w:].sum(dim=(1, 2)),
            positive[:, half_h:, :half_w].sum(dim=(1, 2)),
            positive[:, half_h:, half_w:].sum(dim=(1, 2)),
        ],
        dim=1,
    )  # (M, 4)
    total = quadrants.sum(dim=1)
    inside = quadrants.gather(1, cells.long()[:, None])[:, 0]
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def _pick(indices: torch.Tensor, generator: torch.Generator) -> int:
    return int(indices[torch.randint(len(indices), (1,), generator=generator)])


def _tile(images: torch.Tensor, size: int) -> torch.Tensor:
    """Four uint8 images (4, 3, S, S) -> one (3, size, size) mosaic, row-major, each shrunk to its cell
    (the cells split an odd size one pixel apart, as `cell_shares` reads them)."""
    half = size // CELLS_PER_SIDE
    spans = [(0, half), (half, size)]
    mosaic = torch.empty((3, size, size), dtype=torch.uint8)
    for index, image in enumerate(images):
        (top, bottom), (left, right) = spans[index // CELLS_PER_SIDE], spans[index % CELLS_PER_SIDE]
        shrunk = F.interpolate(
            image[None].float(), size=(bottom - top, right - left), mode="bilinear", antialias=True
        )[0]
        mosaic[:, top:bottom, left:right] = shrunk.round().clamp(0, 255).to(torch.uint8)
    return mosaic
