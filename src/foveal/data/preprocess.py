"""Preprocessing stored with every model, so prediction reproduces training's input exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from foveal.data.decode import DEFAULT_MAX_PIXELS, ImageSource, decode_image
from foveal.data.imageset import ImageSet
from foveal.data.resize import INTERPOLATIONS, Interpolation, check_resize  # noqa: F401 (INTERPOLATIONS)
from foveal.errors import ConfigError

PREPROCESSING_VERSION = 3  # 1: Foveal 0.1.0, whose test-time flip lived in the training options;
# 2: before a public checkpoint's bicubic resize and crop_pct could travel with a model (#32)
TestTimeViews = Literal["none", "flip", "flip-shift"]
TEST_TIME_VIEWS: tuple[str, ...] = ("none", "flip", "flip-shift")
VIEW_COUNTS = {"none": 1, "flip": 2, "flip-shift": 6}  # forward passes per image (inference.view_logits)


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the model's input, and which views of it the model sees at test time.

    The image is decoded upright to 8-bit RGB (alpha on white), its shorter side resized to
    `img_size / crop_pct` with `interpolation` (antialiased), center-cropped to img_size x img_size
    (crop_pct 1: the whole shorter side; timm's DeiT: 0.9, its border cut off), scaled to
    [0, 1] and normalised with `mean` and `std` (per channel, RGB order). With
    `test_time_views="flip"` the logits are the mean of the image's and its mirror image's; with
    "flip-shift", also of both shifted one pixel up-left and down-right (inference.view_logits).

    Saved with every model (and, later, an export's metadata): nothing else decides how an image
    becomes a prediction's input.
    """

    img_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    interpolation: Interpolation = "bilinear"  # a public checkpoint's own (timm's: mostly bicubic)
    resize: Literal["shorter-side-then-center-crop"] = "shorter-side-then-center-crop"
    test_time_views: TestTimeViews = "none"
    crop_pct: float = 1.0  # share of the resized shorter side kept by the center crop
    version: int = PREPROCESSING_VERSION

    def __post_init__(self) -> None:
        if self.test_time_views not in TEST_TIME_VIEWS:
            raise ConfigError(
                f"test-time views must be one of {', '.join(TEST_TIME_VIEWS)}, got {self.test_time_views!r}"
            )
        check_resize(self.interpolation, self.crop_pct)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def view_count(self) -> int:
        """Forward passes per image at test time."""
        return VIEW_COUNTS[self.test_time_views]

    def with_views(self, views: TestTimeViews) -> Preprocessing:
        """The same preprocessing with other test-time views (`foveal evaluate --tta-flip`)."""
        return replace(self, test_time_views=views)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, legacy_flip: bool = False) -> Preprocessing:
        """Read a saved preprocessing; a version-1 one (no `version` key) takes its test-time view
        from `legacy_flip`, the `tta_flip` training option that version kept it in."""
        version = int(data.get("version", 1))
        if version > PREPROCESSING_VERSION:
            raise ConfigError(
                f"preprocessing version {version} is newer than this Foveal reads ({PREPROCESSING_VERSION}); "
                "upgrade Foveal."
            )
        views = data.get("test_time_views", "flip" if legacy_flip and version == 1 else "none")
        return cls(
            img_size=int(data["img_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bilinear"),
            resize=data.get("resize", "shorter-side-then-center-crop"),
            test_time_views=views,
            crop_pct=float(data.get("crop_pct", 1.0)),
        )

    def decode(self, source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
        """An image file (a path, a binary file or its bytes) as this model's uint8 input (3, S, S):
        upright RGB, resized and center-cropped as `interpolation` and `crop_pct` say.

        Raises:
            ImageDecodeError: The file does not decode (see `decode.load_rgb`); max_pixels as there.
        """
        return decode_image(
            source,
            self.img_size,
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
            max_pixels=max_pixels,
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, S, S) -> float32 (B, 3, S, S), normalised, in channels-last memory order."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1) * 255.0
        inv_std = 1.0 / (torch.tensor(self.std, device=images.device).view(1, 3, 1, 1) * 255.0)
        normalized = (images.float() - mean) * inv_std
        return normalized.contiguous(memory_format=torch.channels_last)  # see runtime.to_fast_layout


def channel_stats(images: ImageSet, max_images: int = 10_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on the 0..1 scale) of up to `max_images` evenly spaced images.

    Summed in float64 over chunks of STATS_CHUNK_PIXELS, so that memory stays small whatever the
    image size (10,000 images of 96 px as one float tensor would be 1.1 GB).
    """
    step = max(1, len(images) // max_images)
    sample = images.images[::step]  # a view: (n, 3, S, S) uint8
    per_chunk = max(1, STATS_CHUNK_PIXELS // (sample.shape[2] * sample.shape[3]))
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, sample.shape[0], per_chunk):
        chunk = sample[start : start + per_chunk].double().div_(255.0)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = sample.shape[0] * sample.shape[2] * sample.shape[3]
    mean = total / count
    variance = (squares - count * mean.square()) / max(1, count - 1)  # unbiased, as torch.std
    std = variance.clamp_min(0).sqrt().clamp_min(1e-3)  # a blank data set must not divide by zero
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


STATS_CHUNK_PIXELS = 4_000_000  # pixels per chunk of channel_stats (about 100 MB in float64)
