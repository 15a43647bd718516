"""What each set of test-time views buys a trained model, and what it costs: top-1 and seconds on the
held-out images with no extra view, the mirror view (`--tta-flip`, the hybrid recipe's default) and
six views (mirror and one-pixel shifts, `--tta-shift`), each through the one inference path.

    python benchmarks/tta_views.py RUN_OR_MODEL [RUN_OR_MODEL ...] --data ../shared/data/cifar10

The views only change evaluation, so a saved model answers this without training again. Under a time
budget the views' cost is spent inside it (the run validates with them), which is why the recipe's
default is the cheapest set that pays.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import load_average, save

import foveal
from foveal.data.preprocess import TEST_TIME_VIEWS
from foveal.data.sources import load_evaluation_data
from foveal.evaluation.workflow import evaluate as evaluate_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="run folders or saved .safetensors models")
    parser.add_argument("--data", required=True, help="a data set root (its test/ or val/) or a folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations per view set (median)")
    parser.add_argument("--name", default="tta_views")
    args = parser.parse_args()
    load_before = load_average()
    rows = []
    for source in args.models:
        classifier = foveal.load(source, device="cpu")
        images, description = load_evaluation_data(args.data, classifier.classes, classifier.preprocessing)
        for views in TEST_TIME_VIEWS:
            preprocessing = classifier.preprocessing.with_views(views)
            seconds, top1 = [], None
            for _ in range(args.repeats):
                started = time.perf_counter()
                evaluation = evaluate_images(classifier.model, images, preprocessing, data=description)
                seconds.append(time.perf_counter() - started)
                top1 = evaluation.metrics.top1
            row = {
                "model": str(Path(source)),
                "preset": classifier.model.config.name,
                "trained_with": classifier.preprocessing.test_time_views,
                "views": views,
                "forward_passes_per_image": preprocessing.view_count,
                "test_top1": round(float(top1), 4),
                "images": len(images),
                "seconds_median": round(statistics.median(seconds), 2),
            }
            print(row, flush=True)
            rows.append(row)
    save(
        args.name,
        {
            "data": args.data,
            "rows": rows,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
    )


if __name__ == "__main__":
    main()
