"""Explain a loaded model's predictions on images: maps, PNGs, JSON, a contact sheet, faithfulness.

classifier = foveal.load("runs/train")
explanations, skipped = explain_inputs(classifier, ["cat.jpg"], method="rollout")
for e in explanations:
    print(e.source, e.labels[0], e.grid)

`classifier` below is a loaded `foveal.Classifier` (predictor/classifier.py): its network, info,
device and classes are read, whether PyTorch or onnxruntime runs it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from foveal.data.files import check_image_tensor, collect_images, decode_paths
from foveal.errors import ConfigError, suggest
from foveal.explanation.faithfulness import CURVE_STEPS, CurveScores, faithfulness
from foveal.explanation.pixels import normalise, upsample
from foveal.explanation.render import render_contact_sheet, render_explanation
from foveal.explanation.result import Explanation
from foveal.explanation.time_limit import NO_LIMIT, TimeLimit
from foveal.io import atomic_write_json
from foveal.messages import say
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import predict_logits


def default_method(methods: Sequence[str]) -> str:
    """The first of rollout, pool and gradcam among the `methods` a model can show: rollout for
    models with attention, gradcam for CNNs, pool for an ONNX model exported without rollout."""
    return next((m for m in ("rollout", "pool", "gradcam") if m in methods), "gradcam")


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
    classifier: Classifier,
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
    quiet: bool = True,
) -> list[Explanation]:
    """Explanations of uint8 images (N, 3, S, S) by a loaded `foveal.Classifier`; unless `quiet`, a
    line on stderr after each batch when there are several.

    Labels and probabilities come from the one inference path (`predict_logits`, with the model's
    test-time views), so they are exactly what `predict` gives; the maps take their own explicit
    pass and explain the class shown (or `target`). The model's weights and mode are untouched.
    """
    network, info = classifier.network, classifier.info
    method = method or default_method(classifier.methods)
    index = class_index(target, info.classes)
    was_training = network.training
    out: list[Explanation] = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            logits = predict_logits(network, batch, info.preprocessing, device=classifier.device)
            probs = logits.softmax(dim=1)
            targets = probs.argmax(dim=1) if index is None else torch.full((batch.shape[0],), index)
            normalized = info.preprocessing.normalize(batch.to(classifier.device))
            maps = network.token_maps(
                normalized, method, targets, head_fusion=head_fusion, discard_ratio=discard_ratio
            ).maps.cpu()
            pixels = normalise(upsample(maps, tuple(batch.shape[-2:]))).numpy()
            values, indices = probs.topk(max(1, min(top_k, probs.shape[1])), dim=1)
            for i in range(batch.shape[0]):
                n = start + i
                out.append(
                    Explanation(
                        source=sources[n],
                        method=method,
                        target=info.classes[int(targets[i])],
                        grid=tuple(maps.shape[-2:]),
                        token_map=[[round(float(v), 6) for v in row] for row in maps[i]],
                        labels=[info.classes[j] for j in indices[i].tolist()],
                        probabilities=[round(float(v), 6) for v in values[i]],
                        true_label=None if true_labels is None else true_labels[n],
                        image=batch[i].permute(1, 2, 0).cpu().numpy(),
                        pixel_map=pixels[i],
                    )
                )
            if images.shape[0] > batch_size:
                say(f"explain: {len(out):,} of {images.shape[0]:,} images ({method})", quiet)
    finally:
        network.train(was_training)
    return out


def save_explanations(explanations: list[Explanation], out: str | Path) -> list[Path]:
    """Write a PNG and a JSON per explanation (and contact_sheet.png for two or more) into `out`."""
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
    classifier: Classifier,
    images: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    steps: int = CURVE_STEPS,
    seed: int = 0,
    deletion_fill: str = "mean",
    quiet: bool = True,
    limit: TimeLimit = NO_LIMIT,
    batch_size: int = 64,
) -> list[CurveScores]:
    """Deletion/insertion scores of `methods` (default: every method the model supports) and of
    random maps, on uint8 images (N, 3, S, S); deleted pixels take the mean colour or a blur.
    Unless `quiet`, says on stderr what it measures before it starts. Under a `limit`, on the first
    images that fit, `batch_size` at a time (each score's `images` says how many; none if none)."""
    network, preprocessing = classifier.network, classifier.info.preprocessing
    if methods is None:
        methods = network.methods
    say(f"faithfulness: deletion and insertion curves of {', '.join(methods)} and random maps on "
        f"{images.shape[0]} images", quiet)  # fmt: skip
    normalized = preprocessing.normalize(images.to(classifier.device))
    was_training = network.training
    try:
        return faithfulness(
            network,
            normalized,
            list(methods),
            steps=steps,
            seed=seed,
            deletion_fill=deletion_fill,
            views=preprocessing.test_time_views,
            limit=limit,
            batch_size=batch_size,
        )
    finally:
        network.train(was_training)


def explain_inputs(
    classifier: Classifier, images: Sequence[str | Path] | str | Path | torch.Tensor, **options
) -> tuple[list[Explanation], list[tuple[str, str]]]:
    """Explanations of image files and folders (searched recursively; true labels from their class
    folders) or of a uint8 tensor (N, 3, S, S), and (path, reason) of the files skipped.
    `options` are explain_images's."""
    preprocessing = classifier.info.preprocessing
    if isinstance(images, torch.Tensor):
        batch = check_image_tensor(images, preprocessing.img_size)
        return explain_images(classifier, batch, [f"tensor[{i}]" for i in range(len(batch))], **options), []
    files = collect_images([images] if isinstance(images, (str, Path)) else images)
    batch, good, failed = decode_paths(files, preprocessing)
    sources, true_labels = [str(f) for f in good], true_labels_of(good, classifier.classes)
    return explain_images(classifier, batch, sources, true_labels=true_labels, **options), failed
