"""The heatmap overlay a browser can show: the image with its map blended over it, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image

ALPHA = 0.5  # the map's share of each pixel, as in the explain command's pictures (explanation/render.py)
MIN_SIDE = 224  # px: small model inputs (32 px) are enlarged, pixel for pixel, so a page shows them


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> bytes:
    """uint8 `image` (H, W, 3) and `heat` (H, W) in [0, 1] -> PNG bytes of their blend (inferno map)."""
    colours = colormaps["inferno"](np.clip(heat, 0.0, 1.0))[..., :3] * 255  # (H, W, 3)
    blended = ((1 - alpha) * image.astype(np.float32) + alpha * colours).round().astype(np.uint8)
    picture = Image.fromarray(blended)
    scale = max(1, -(-MIN_SIDE // max(picture.size)))  # ceil
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
