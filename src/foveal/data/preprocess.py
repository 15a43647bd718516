"""Preprocessing stored with every model, so prediction reproduces training's input exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from foveal.data.imageset import ImageSet


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the model's input tensor.

    The image is decoded upright to 8-bit RGB (alpha on white), its shorter side resized to
    `img_size` with `interpolation` (antialiased), center-cropped to img_size x img_size, scaled to
    [0, 1] and normalised with `mean` and `std` (per channel, RGB order).
    """

    img_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    interpolation: Literal["bilinear"] = "bilinear"
    resize: Literal["shorter-side-then-center-crop"] = "shorter-side-then-center-crop"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            img_size=int(data["img_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bilinear"),
            resize=data.get("resize", "shorter-side-then-center-crop"),
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, S, S) -> float32 (B, 3, S, S), normalised, in channels-last memory order."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1) * 255.0
        inv_std = 1.0 / (torch.tensor(self.std, device=images.device).view(1, 3, 1, 1) * 255.0)
        normalized = (images.float() - mean) * inv_std
        return normalized.contiguous(memory_format=torch.channels_last)  # see runtime.to_fast_layout


def channel_stats(images: ImageSet, max_images: int = 10_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on the 0..1 scale) of up to `max_images` evenly spaced images."""
    step = max(1, len(images) // max_images)
    sample = images.images[::step].float().div_(255.0)  # (n, 3, S, S)
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a blank data set must not divide by zero
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
