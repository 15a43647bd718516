"""The model card of a bundle: Hugging Face model-card front matter, then what a reader needs to
decide whether to use the model and how."""

from __future__ import annotations

import yaml

from foveal.data.builtin import NATIVE_SIZE
from foveal.data.preprocess import Preprocessing
from foveal.data.resize import resized_shorter_side
from foveal.evaluation.metrics import shows_top_k
from foveal.exporting.facts import RunFacts
from foveal.predictor.saved import ModelInfo


def model_card(name: str, info: ModelInfo, facts: RunFacts, license: str) -> str:
    """README.md text: YAML front matter (pipeline_tag, library_name, license, datasets, tags,
    model-index with the run's held-out results when there are any), then the card's sections."""
    return f"---\n{yaml.safe_dump(front_matter(name, info, facts, license), sort_keys=False)}---\n\n" + body(
        name, info, facts
    )


# Built-in data sets that have a Hub id; the metadata's `datasets` names Hub data sets, never a path.
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10"}


def dataset_type(source: str | None) -> str:
    """model-index's dataset `type`: the Hub id, a built-in's name, or "imagefolder" for a folder of
    class folders (as the Hub's own cards call local image data); never a path on someone's disk."""
    if source in HUB_DATASETS:
        return HUB_DATASETS[source]
    return source if source in NATIVE_SIZE else "imagefolder"  # NATIVE_SIZE: every built-in


def front_matter(name: str, info: ModelInfo, facts: RunFacts, license: str) -> dict:
    matter: dict = {
        "pipeline_tag": "image-classification",
        "library_name": "foveal",
        "license": license,
        "tags": ["foveal", "image-classification", info.config.family],
    }
    hub_id = HUB_DATASETS.get(facts.source or "")
    if hub_id:
        matter["datasets"] = [hub_id]
    evaluation = facts.evaluation
    if evaluation and evaluation.get("top1") is not None:
        dataset = evaluation.get("data") or facts.data or "held-out images"
        top_k = evaluation.get("top_k", 5)
        metrics = [
            {"type": "accuracy", "value": round(evaluation["top1"], 4), "name": "top-1 accuracy"},
            *(
                [{"type": "accuracy", "value": round(evaluation["top5"], 4), "name": f"top-{top_k} accuracy"}]
                if shows_top_k(top_k, len(info.classes))
                else []
            ),
            {"type": "f1", "value": round(evaluation["macro_f1"], 4), "name": "macro F1"},
        ]
        matter["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {"name": dataset, "type": dataset_type(facts.source)},
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return matter


VIEW_WORDS = {
    "none": "the image alone",
    "flip": "the image and its mirror image, averaged",
    "flip-shift": (
        "the image and its mirror image, each also shifted one pixel up-left and down-right, averaged"
    ),
}


def _top_k_words(evaluation: dict, num_classes: int) -> str:
    """'top-3 97.20%, ', or nothing where the figure says nothing (`shows_top_k`)."""
    top_k = evaluation.get("top_k", 5)
    return f"top-{top_k} {evaluation['top5']:.2%}, " if shows_top_k(top_k, num_classes) else ""


def _crop_words(pre: Preprocessing, side: int) -> str:
    """Where the resized `side` comes from, when the crop does not keep all of it; else nothing."""
    if pre.crop_pct == 1.0:
        return ""
    return f" (crop_pct {pre.crop_pct:g}: {side} = floor({pre.img_size} / {pre.crop_pct:g}))"


def body(name: str, info: ModelInfo, facts: RunFacts) -> str:
    config, pre = info.config, info.preprocessing
    views = VIEW_WORDS[pre.test_time_views]
    side = resized_shorter_side(pre.img_size, pre.crop_pct)
    crop = _crop_words(pre, side)
    evaluation = facts.evaluation
    results = (
        f"Top-1 {evaluation['top1']:.2%}, {_top_k_words(evaluation, len(info.classes))}"
        f"macro F1 {evaluation['macro_f1']:.3f} on {evaluation.get('num_samples')} held-out images"
        + ("." if evaluation.get("data") in (None, facts.data) else f" ({evaluation['data']}).")
        if evaluation and evaluation.get("top1") is not None
        else "Not evaluated in this bundle: measure it with `foveal evaluate MODEL DATA`."
    )
    data = facts.data or "not recorded (the model was exported without its run folder)"
    classes = ", ".join(info.classes[:30]) + (
        f" ... ({len(info.classes)} in all)" if len(info.classes) > 30 else ""
    )
    return f"""# {name}

A Foveal image classifier ({config.family} family, preset `{config.name}`), {len(info.classes)} classes:
{classes}.

## Data

{data}.

## Results

{results}

## Input

Decode to 8-bit RGB (EXIF orientation applied, alpha on white), resize the shorter side to
{side} px ({pre.interpolation}, antialiased), center-crop to {pre.img_size} x {pre.img_size}{crop},
scale to [0, 1], normalise with mean {list(pre.mean)} and std {list(pre.std)} (RGB). The model
sees {views}. `config.json` holds this preprocessing as data (`preprocessing`), with the class
names (`id2label`).

## Intended use and limits

For images like its training data, from the classes above. It has never seen other classes and
will still name one of its own for any image; its accuracy on other cameras, sizes or subjects is
unmeasured. Check it on your own held-out images (`foveal evaluate`) before relying on it.

## How to use

```python
import foveal

classifier = foveal.load("{name}")          # this folder
print(classifier.predict(["photo.jpg"], top_k=3)[0].labels)
```

or `foveal predict {name} photo.jpg`; `foveal explain {name} photo.jpg` shows where it looked.
"""
