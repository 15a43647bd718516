"""Predict with this bundle's model.onnx without Foveal or PyTorch: numpy, Pillow and onnxruntime.

    python predict.py photo.jpg [more.jpg ...] [--top-k 3]

Each line: the image, its top-k labels with probabilities, and "unknown" when the image looks like
none of the classes (its familiarity score below the threshold model.onnx carries in its metadata,
"rejection"; config.json shows the same threshold).

It reproduces Foveal's preprocessing from config.json: upright (EXIF), 8-bit RGB with transparency
on white, the shorter side resized to img_size / crop_pct (its interpolation, antialiased), the
center img_size x img_size, [0, 1], normalised per channel; an image over 50:1 is refused, as Foveal
refuses it. (16-bit and float images, which Foveal scales first, are left out here.)
"""

from __future__ import annotations

import argparse
import base64
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

HERE = Path(__file__).parent
MAX_ASPECT_RATIO = 50  # Foveal refuses longer sides over 50 times the shorter (foveal/data/decode.py)


def preprocess(path: str, pre: dict) -> np.ndarray:
    """float32 (3, S, S), as Foveal feeds the model."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
    width, height = image.size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(f"{path}: extreme aspect ratio {width} x {height} (over {MAX_ASPECT_RATIO:g}:1)")
    resized = resize_and_crop(
        image, pre["img_size"], pre.get("interpolation", "bilinear"), pre.get("crop_pct", 1.0)
    )  # an older bundle has neither key: bilinear, the whole shorter side
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return pixels.transpose(2, 0, 1)


def resize_and_crop(image: Image.Image, size: int, interpolation: str, crop_pct: float) -> Image.Image:
    """The shorter side resized to floor(size / crop_pct) (antialiased), then the center size x size, as
    Foveal's foveal/data/resize.py does it: only the crop is resampled, in two one-axis passes
    (horizontal first), so a thin image never builds its enlarged whole. Foveal's own models (bilinear,
    crop_pct 1) keep Foveal's rounding; any other resize rounds as torchvision's Resize and CenterCrop."""
    timm_rounding = (interpolation, crop_pct) != ("bilinear", 1.0)
    width, height = image.size
    short_side, short, long = math.floor(size / crop_pct), min(width, height), max(width, height)
    if timm_rounding:
        new_long = int(short_side * long / short)
    else:
        new_long = max(short_side, round(long * (short_side / short)))
    new_width, new_height = (short_side, new_long) if width <= height else (new_long, short_side)
    left, top = (
        (int(round((new_width - size) / 2.0)), int(round((new_height - size) / 2.0)))
        if timm_rounding
        else ((new_width - size) // 2, (new_height - size) // 2)
    )
    if (new_width, new_height) == image.size:
        return image.crop((left, top, left + size, top + size))
    sx, sy = width / new_width, height / new_height  # the crop in source pixels
    x0, x1, y0, y1 = left * sx, (left + size) * sx, top * sy, (top + size) * sy
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interpolation]
    # The rows the second pass reads: the filter's reach (bilinear 1, bicubic 2 source pixels, widened by
    # the shrink), and one for rounding.
    reach = {"bilinear": 1.0, "bicubic": 2.0}[interpolation] * max(sy, 1.0) + 1.0
    row0, row1 = max(0, math.floor(y0 - reach)), min(height, math.ceil(y1 + reach))
    band = image.resize((size, row1 - row0), resample, box=(x0, row0, x1, row1))
    return band.resize((size, size), resample, box=(0, y0 - row0, size, y1 - row0))


def familiarity(
    rejection: dict, logits: np.ndarray, pooled: np.ndarray, probabilities: np.ndarray
) -> np.ndarray:
    """Open-set rejection as Foveal does it (predictor/rejection.py): a familiarity score (N,) below the
    calibrated threshold means the image looks like none of the classes."""
    if rejection["score"] == "energy":  # logsumexp of the logits
        peak = logits.max(1, keepdims=True)
        return (peak + np.log(np.exp(logits - peak).sum(1, keepdims=True)))[:, 0]
    if rejection["score"] == "msp":  # the top probability
        return probabilities.max(1)
    # mahalanobis: minus the distance of the whitened pooled features to the nearest whitened class mean
    whitening, centres = (decode(rejection["distance"][key]) for key in ("whitening", "centres"))
    whitened = pooled @ whitening.T  # (N, C)
    return -np.sqrt(((whitened[:, None, :] - centres[None]) ** 2).sum(-1)).min(1)


def decode(stored: dict) -> np.ndarray:
    """A float32 array Foveal stored as its shape and little-endian bytes in base64."""
    return np.frombuffer(base64.b64decode(stored["float32_base64"]), dtype="<f4").reshape(stored["shape"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    config = json.loads((HERE / "config.json").read_text())
    labels = config["id2label"]
    session = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    try:
        batch = np.stack([preprocess(path, config["preprocessing"]) for path in args.images])
    except (OSError, ValueError) as error:  # a missing file, or one Pillow cannot read as an image
        raise SystemExit(f"error: {error}; expected image files (JPEG, PNG, ...).") from None
    logits, pooled = session.run(["logits", "pooled"], {"pixel_values": batch})  # (N, K), (N, C)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    stored = session.get_modelmeta().custom_metadata_map.get("rejection")  # absent: no threshold
    rejection = json.loads(stored) if stored else None
    unknown = (
        familiarity(rejection, logits, pooled, probabilities) < rejection["threshold"]
        if rejection
        else np.zeros(len(batch), bool)
    )
    for path, row, out in zip(args.images, probabilities, unknown):
        top = np.argsort(-row)[: args.top_k]
        print(path, " ".join(f"{labels[str(i)]}:{row[i]:.4f}" for i in top), "unknown" if out else "")


if __name__ == "__main__":
    main()
