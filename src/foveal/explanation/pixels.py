"""From the token grid back to image pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) grid maps -> (B, H, W) pixel maps.

    The conv tokenizer's cell (i, j) is centred on pixel ((i + 0.5) H / h, (j + 0.5) W / w) (its
    stride and padding are symmetric), which is what bilinear resizing with align_corners=False
    assumes, so each cell's value lands on the pixels it was computed from.
    """
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of (B, ...) to [0, 1] (a constant map becomes all zeros)."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = (flat.max(dim=1, keepdim=True).values - low).clamp_min(1e-12)
    return ((flat - low) / span).reshape(maps.shape)
