"""Explain a saved model's predictions on images: maps, PNGs, JSON, a contact sheet, faithfulness.

classifier = foveal.load("runs/train")
for e in foveal.explain(classifier, ["cat.jpg"], method="rollout", out="runs/explain"):
    print(e.source, e.labels[0], e.grid)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foveal.errors import ConfigError, suggest
from foveal.explanation.faithfulness import CurveScores, faithfulness
from foveal.explanation.maps import available_methods, compute_maps, has_attention
from foveal.explanation.pixels import normalise, upsample
from foveal.io import atomic_write_json


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


def default_method(model: torch.nn.Module) -> str:
    """rollout for attention models, gradcam for CNNs."""
    return "rollout" if has_attention(model) else "gradcam"


def class_index(target: str | int | None, classes: list[str]) -> int | None:
    """The index of class `target` (a name or an index), or None for "the predicted class"."""
    if target is None:
        return None
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in classes):
        index = int(target)
        if not 0 <= index < len(classes):
            raise ConfigError(f"class index {index} is out of range; the model has {len(classes)} classes.")
        return index
    if target not in classes:
        shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
        raise ConfigError(
            f"class {target!r} is not one of the model's classes ({shown}).{suggest(target, classes)}"
        )
    return classes.index(target)


def explain_images(
    classifier,
    images: torch.Tensor,
    sources: Sequence[str],
    *,
    method: str | None = None,
    target: str | int | None = None,
    top_k: int = 5,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    true_labels: Sequence[str | None] | None = None,
    batch_size: int = 64,
) -> list[Explanation]:
    """Explanations of uint8 images (N, 3, S, S) by a loaded `foveal.Classifier`.

    The explicit attention path is used only inside this call; the model's weights, mode and
    predictions are untouched (tests/test_explain.py checks the probabilities against `predict`).
    """
    model, info = classifier.model, classifier.info
    method = method or default_method(model)
    index = class_index(target, info.classes)
    was_training = model.training
    model.eval()
    out: list[Explanation] = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            normalized = info.preprocessing.normalize(batch.to(classifier.device))
            targets = None if index is None else torch.full((batch.shape[0],), index, dtype=torch.long)
            maps = compute_maps(
                model, normalized, method, targets, head_fusion=head_fusion, discard_ratio=discard_ratio
            )
            pixels = normalise(upsample(maps.maps, tuple(batch.shape[-2:]))).cpu().numpy()
            probs = maps.logits.float().softmax(dim=1).cpu()
            k = max(1, min(top_k, probs.shape[1]))
            values, indices = probs.topk(k, dim=1)
            for i in range(batch.shape[0]):
                n = start + i
                out.append(
                    Explanation(
                        source=sources[n],
                        method=method,
                        target=info.classes[int(maps.targets[i])],
                        grid=tuple(maps.maps.shape[-2:]),
                        token_map=[[round(float(v), 6) for v in row] for row in maps.maps[i].cpu()],
                        labels=[info.classes[j] for j in indices[i].tolist()],
                        probabilities=[round(float(v), 6) for v in values[i]],
                        true_label=None if true_labels is None else true_labels[n],
                        image=batch[i].permute(1, 2, 0).cpu().numpy(),
                        pixel_map=pixels[i],
                    )
                )
    finally:
        model.train(was_training)
    return out


def save_explanations(explanations: list[Explanation], out: str | Path) -> list[Path]:
    """Write a PNG and a JSON per explanation (and contact_sheet.png for two or more) into `out`."""
    from foveal.explanation.render import render_contact_sheet, render_explanation

    out = Path(out)
    written = []
    for n, explanation in enumerate(explanations):
        stem = f"{n:04d}_{_safe_stem(explanation.source)}"
        written.append(render_explanation(explanation, out / f"{stem}.png"))
        atomic_write_json(out / f"{stem}.json", explanation.to_dict())
        written.append(out / f"{stem}.json")
    if len(explanations) > 1:
        written.append(render_contact_sheet(explanations, out / "contact_sheet.png"))
    return written


def _safe_stem(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).stem)[:60] or "image"


def true_labels_of(files: Sequence[Path], classes: list[str]) -> list[str | None]:
    """Each file's class folder name when it is one of the model's classes, else None."""
    return [f.parent.name if f.parent.name in classes else None for f in files]


def measure_faithfulness(
    classifier,
    images: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    steps: int = 16,
    seed: int = 0,
    deletion_fill: str = "mean",
) -> list[CurveScores]:
    """Deletion/insertion scores of `methods` (default: every method the model supports) and of
    random maps, on uint8 images (N, 3, S, S); deleted pixels take the mean colour or a blur."""
    model = classifier.model
    if methods is None:
        methods = available_methods(model)
    normalized = classifier.info.preprocessing.normalize(images.to(classifier.device))
    was_training = model.training
    try:
        return faithfulness(
            model, normalized, list(methods), steps=steps, seed=seed, deletion_fill=deletion_fill
        )
    finally:
        model.train(was_training)


def explain(
    model,
    images,
    *,
    method: str | None = None,
    target: str | int | None = None,
    top_k: int = 5,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    out: str | Path | None = None,
    device: str = "auto",
) -> list[Explanation]:
    """Explain a model's predictions: `foveal.explain("runs/train", ["cat.jpg", "photos/"])`.

    Args:
        model: a `foveal.Classifier`, a run folder or a saved .safetensors model.
        images: image files and folders (searched recursively), or uint8 tensors (N, 3, S, S).
        method: pool, rollout, grad-rollout or gradcam [default: rollout; gradcam for a CNN].
        target: the class to explain (name or index) [default: each image's predicted class].
        out: a folder to write a PNG and JSON per image (and a contact sheet) into.

    Raises:
        FovealError: a method the model cannot use, an unknown class, or no decodable image.
    """
    from foveal.classifier import Classifier, collect_images, load

    classifier = model if isinstance(model, Classifier) else load(model, device)
    options = {"method": method, "target": target, "top_k": top_k}
    options |= {"head_fusion": head_fusion, "discard_ratio": discard_ratio}
    if isinstance(images, torch.Tensor):
        batch = classifier.check_tensor(images)
        explanations = explain_images(
            classifier, batch, [f"tensor[{i}]" for i in range(len(batch))], **options
        )
    else:
        files = collect_images([images] if isinstance(images, (str, Path)) else images)
        explanations, _ = explain_files(classifier, files, **options)
    if out is not None:
        save_explanations(explanations, out)
    return explanations


def explain_files(
    classifier, files: Sequence[Path], **options
) -> tuple[list[Explanation], list[tuple[str, str]]]:
    """Explanations of every image file that decodes (true labels from their class folders), and
    (path, reason) of the files skipped. `options` are explain_images's."""
    from foveal.classifier import decode_paths

    batch, good, failed = decode_paths(list(files), classifier.info.preprocessing.img_size)
    sources, true_labels = [str(f) for f in good], true_labels_of(good, classifier.classes)
    return explain_images(classifier, batch, sources, true_labels=true_labels, **options), failed
