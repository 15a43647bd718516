"""One explained image: what the model predicted and where it looked to do so."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Explanation:
    """What the model predicted for one image and where it looked to do so."""

    source: str
    method: str
    target: str  # the class the map explains
    grid: tuple[int, int]  # the token (or feature) grid (h, w) of `token_map`
    token_map: list[list[float]]  # raw map values on the grid, (h, w)
    labels: list[str]  # top-k, most probable first
    probabilities: list[float]
    true_label: str | None = None  # from the image's class folder, when it has one
    image: np.ndarray = field(repr=False, default=None)  # uint8 (H, W, 3), as the model saw it
    pixel_map: np.ndarray = field(repr=False, default=None)  # (H, W) in [0, 1], upsampled

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "method": self.method,
            "target": self.target,
            "grid": list(self.grid),
            "map": self.token_map,
            "labels": self.labels,
            "probabilities": self.probabilities,
            "true_label": self.true_label,
        }
