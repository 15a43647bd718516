"""Where a trained model looks, and how faithful each explanation method is, on held-out images.

    python benchmarks/explain_maps.py RUN ../shared/data/cifar10 --name explain_cifar10 \
        --figure docs/images/explain_cifar10.png
    python benchmarks/explain_maps.py --quick          # CI: a 1-epoch digits model, 16 images

Figures: deletion and insertion AUC (mean and standard error) of every method and of random maps
of the same grid, on --images evenly spaced held-out images; a picture of each method's maps on
--sheet of them (the docs' contact sheet).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import load_average, quick_digits_run, save

import foveal
from foveal.data.sources import load_evaluation_data
from foveal.explanation.faithfulness import faithfulness_table
from foveal.explanation.render import render_method_comparison
from foveal.explanation.workflow import explain_images, measure_faithfulness
from foveal.models.maps import available_methods


def evenly_spaced(count: int, total: int, offset: float = 0.0) -> torch.Tensor:
    return (torch.linspace(0, total - 1, count) + offset).round().long().clamp(0, total - 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="A run folder or .safetensors model (not with --quick).")
    parser.add_argument(
        "data", nargs="?", help="Held-out data: a data set root, class folders or a built-in."
    )
    parser.add_argument("--images", type=int, default=500, help="Images the faithfulness is measured on.")
    parser.add_argument("--sheet", type=int, default=12, help="Images in the picture of the maps.")
    parser.add_argument("--figure", type=Path, help="Where to save that picture [default: beside the JSON].")
    parser.add_argument("--name", default="explain")
    parser.add_argument("--out", type=Path, help="Results folder [default: benchmarks/results].")
    parser.add_argument("--quick", action="store_true", help="CI: train a 1-epoch digits model first.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.model = quick_digits_run(scratch, "foveal-tiny")
            args.data, args.images, args.sheet = "digits", 16, 4
        if not args.model or not args.data:
            parser.error("give MODEL and DATA, or --quick")
        measure(args)


def measure(args: argparse.Namespace) -> None:
    classifier = foveal.load(args.model, device="cpu")
    data, description = load_evaluation_data(
        args.data, classifier.classes, classifier.info.preprocessing
    )
    sample = evenly_spaced(min(args.images, len(data)), len(data))
    load_before = load_average()
    started = time.perf_counter()
    scores = measure_faithfulness(classifier, data.images[sample])
    blur_scores = measure_faithfulness(classifier, data.images[sample], deletion_fill="blur")
    seconds = time.perf_counter() - started
    print("deleted pixels take the mean colour:")
    print(faithfulness_table(scores))
    print("deleted pixels take a blurred copy's values:")
    print(faithfulness_table(blur_scores))
    shown = evenly_spaced(min(args.sheet, len(data)), len(data), offset=len(data) / (2 * args.images))
    images = data.images[shown]
    maps, titles = {}, []
    for method in available_methods(classifier.model):
        explanations = explain_images(
            classifier, images, [f"{int(i)}" for i in shown], method=method, top_k=1
        )
        maps[method] = [e.pixel_map for e in explanations]
        titles = [
            f"{e.labels[0]} {e.probabilities[0]:.0%}" + ("" if e.labels[0] == true else f"\n(true: {true})")
            for e, true in zip(explanations, [data.classes[int(data.labels[i])] for i in shown])
        ]
    figure = args.figure or (args.out or Path(__file__).parent / "results") / f"{args.name}.png"
    render_method_comparison([e.image for e in explanations], maps, titles, figure)
    save(
        args.name,
        {
            "model": args.model,
            "data": description,
            "quick": args.quick,
            "images": len(sample),
            "explained_class": "the predicted class of each image",
            "steps": 16,
            "seconds": round(seconds, 1),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "figure": str(figure),
            "scores": [s.to_dict() for s in scores],
            "table": faithfulness_table(scores),
            "blur_deletion_scores": [s.to_dict() for s in blur_scores],
            "blur_deletion_table": faithfulness_table(blur_scores),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
