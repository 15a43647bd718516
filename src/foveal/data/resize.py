"""The one resize of every image Foveal reads: the shorter side to `size / crop_pct`, then the center crop.

Only the crop is resampled, never the whole enlarged image, so the cost is the output's (see
`resize_and_crop`). The geometry is timm's eval transform (`transforms_factory`: Resize to
floor(size / crop_pct) with the model's interpolation, then CenterCrop(size)), so a public checkpoint
sees the pixels it was trained to see; Foveal's own models (bilinear, crop_pct 1) keep the rounding
they have always been trained and read with.
"""

from __future__ import annotations

import math
from typing import Literal

from PIL import Image

from foveal.errors import ConfigError

Interpolation = Literal["bilinear", "bicubic"]
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")

_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# Pillow's filter radius in source pixels at scale 1 (its `support`), widened by the shrink factor.
_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0}


def check_resize(interpolation: str, crop_pct: float) -> None:
    """A ConfigError unless `interpolation` is one of INTERPOLATIONS and MIN_CROP_PCT <= crop_pct <= 1."""
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if not MIN_CROP_PCT <= crop_pct <= 1.0:  # NaN too
        raise ConfigError(f"crop_pct must be between {MIN_CROP_PCT} and 1, got {crop_pct}")


# timm's checkpoints keep 0.875 to 1 of the shorter side; a tiny share would enlarge the image without
# bound (size / crop_pct), so a damaged or hostile config is refused instead.
MIN_CROP_PCT = 0.25


def resized_shorter_side(size: int, crop_pct: float) -> int:
    """The side the image's shorter side is resized to before the crop: timm's `scale_size`."""
    return math.floor(size / crop_pct)


def resize_and_crop(
    image: Image.Image, size: int, *, interpolation: Interpolation = "bilinear", crop_pct: float = 1.0
) -> Image.Image:
    """Resize the shorter side to floor(size / crop_pct) (antialiased), then center-crop to size x size.

    This is the one preprocessing step shared by training and prediction. Only the crop is resampled:
    the source region under it is resized straight to size x size, so a thin image never builds its
    enlarged whole (1 x 1,000,000 at size 32 would be 32 x 32,000,000, 4 GB). The sampling positions
    and filter support are those of resizing the whole image and cropping, so the pixels are the same
    to within 1 grey level on nearly all values: Pillow takes the box as float32, and Pillow 13
    resizes a whole image that shrinks much more in height than in width (a portrait over 2:1)
    vertical pass first, which rounds some pixels the other way.

    Args:
        image: Any PIL image (normally the RGB output of `decode.load_rgb`).
        size: Side of the square output, at least 1.
        interpolation: Pillow's BILINEAR or BICUBIC filter.
        crop_pct: Share of the resized shorter side the crop keeps (timm's DeiT: 0.9); 1 keeps it whole.

    Returns:
        A new size x size image in the same mode.

    Raises:
        ConfigError: size is not a positive integer, or interpolation or crop_pct is out of range.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"image size must be a positive integer, got {size!r}.")
    check_resize(interpolation, crop_pct)
    # Foveal's own models were trained on its own rounding; any other resize is a public checkpoint's,
    # rounded as torchvision's Resize and CenterCrop round it (timm reads images through them).
    timm_rounding = (interpolation, crop_pct) != ("bilinear", 1.0)
    width, height = image.size
    short_side = resized_shorter_side(size, crop_pct)
    new_width, new_height = _resized_size(width, height, short_side, timm_rounding)
    left = _crop_offset(new_width, size, timm_rounding)
    top = _crop_offset(new_height, size, timm_rounding)
    if (new_width, new_height) == image.size:
        return image.crop((left, top, left + size, top + size))
    # The crop in source pixels: pixel i of the resized image stands for source x in [i, i + 1) * sx.
    sx, sy = width / new_width, height / new_height
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return _resample_box(image, box, sy, size, interpolation)


def _resized_size(width: int, height: int, short_side: int, timm_rounding: bool) -> tuple[int, int]:
    """(width, height) of the image resized so its shorter side is `short_side`."""
    short, long = min(width, height), max(width, height)
    if timm_rounding:  # torchvision's _compute_resized_output_size truncates the longer side
        new_long = int(short_side * long / short)
    else:  # rounded, and never below the shorter side
        new_long = max(short_side, round(long * (short_side / short)))
    return (short_side, new_long) if width <= height else (new_long, short_side)


def _crop_offset(extent: int, size: int, timm_rounding: bool) -> int:
    """Where a centered crop of `size` starts in `extent` pixels: torchvision rounds half to even."""
    return int(round((extent - size) / 2.0)) if timm_rounding else (extent - size) // 2


def _resample_box(
    image: Image.Image,
    box: tuple[float, float, float, float],
    sy: float,
    size: int,
    interpolation: Interpolation,
) -> Image.Image:
    """The source region `box` (x0, y0, x1, y1), `sy` source rows per output row, resampled to size x size.

    Two one-axis passes, horizontal first as Pillow resizes most whole images: the order decides how
    the 8-bit intermediate rounds, and one call with a box would let Pillow pick it from other shapes.
    The first pass keeps only the rows the second reads: the filter reaches support * max(sy, 1)
    source pixels either side of a centre (one more row for Pillow's rounding of the window).
    """
    x0, y0, x1, y1 = box
    height = image.size[1]
    resample = _FILTERS[interpolation]
    reach = _SUPPORT[interpolation] * max(sy, 1.0) + 1.0
    row0, row1 = max(0, math.floor(y0 - reach)), min(height, math.ceil(y1 + reach))
    band = image.resize((size, row1 - row0), resample, box=(x0, row0, x1, row1))
    return band.resize((size, size), resample, box=(0, y0 - row0, size, y1 - row0))
