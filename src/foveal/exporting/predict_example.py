"""Predict with this bundle's model.onnx without Foveal or PyTorch: numpy, Pillow and onnxruntime.

    python predict.py photo.jpg [more.jpg ...] [--top-k 3]

Each line: the image, its top-k labels with probabilities, and "unknown" when the image looks like
none of the classes (its familiarity score below the threshold in config.json's "rejection").

It reproduces Foveal's preprocessing from config.json: upright (EXIF), 8-bit RGB with transparency
on white, the shorter side resized to img_size (bilinear, antialiased), a center crop, [0, 1],
normalised per channel. (16-bit and float images, which Foveal scales first, are left out here.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

HERE = Path(__file__).parent


def preprocess(path: str, pre: dict) -> np.ndarray:
    """float32 (3, S, S), as Foveal feeds the model."""
    size = pre["img_size"]
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new = (
        (size, max(size, round(height * scale)))
        if width <= height
        else (max(size, round(width * scale)), size)
    )
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)  # Pillow widens the filter when shrinking
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    pixels = (pixels - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return pixels.transpose(2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    config = json.loads((HERE / "config.json").read_text())
    labels = config["id2label"]
    session = onnxruntime.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(path, config["preprocessing"]) for path in args.images])
    logits = session.run(["logits"], {"pixel_values": batch})[0]
    peak = logits.max(1, keepdims=True)
    probabilities = np.exp(logits - peak)
    totals = probabilities.sum(1, keepdims=True)
    probabilities /= totals
    # Open-set rejection, as Foveal does it: a familiarity score below the calibrated threshold means
    # the image looks like none of the classes. energy = logsumexp(logits); msp = the top probability.
    rejection = config.get("rejection")
    scores = (
        (peak + np.log(totals))[:, 0]
        if rejection and rejection["score"] == "energy"
        else probabilities.max(1)
    )
    for path, row, score in zip(args.images, probabilities, scores):
        top = np.argsort(-row)[: args.top_k]
        unknown = rejection is not None and score < rejection["threshold"]
        print(path, " ".join(f"{labels[str(i)]}:{row[i]:.4f}" for i in top), "unknown" if unknown else "")


if __name__ == "__main__":
    main()
