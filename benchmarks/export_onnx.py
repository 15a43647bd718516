"""ONNX export of a trained model: parity with Foveal on every held-out image, and batch-1 latency of
onnxruntime against eager PyTorch, measured side by side (interleaved) in one process.

    python benchmarks/export_onnx.py ../shared/data/cifar10 --time 5m --name export_onnx_cifar10
    python benchmarks/export_onnx.py --quick          # CI: a 1-epoch digits model

Figures: parity.json of the export (max |logit difference|, max |pool-weight difference|, top-1
agreement at batch sizes 1, 7 and 64 over --parity-images held-out images) and, for batch 1, the
median and 90th-percentile model-only latency of each runtime (warm-up excluded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from common import load_average, save

import foveal
from foveal.config import parse_duration
from foveal.data.sources import load_evaluation_data
from foveal.predictor.inference import view_logits


def latency(classifier, bundle: Path, images: torch.Tensor, repeats: int) -> dict:
    """Batch-1 model-only latency (ms) of eager PyTorch and onnxruntime, interleaved image by image."""
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    views = classifier.preprocessing.test_time_views
    times: dict[str, list[float]] = {"pytorch_eager": [], "onnxruntime": []}
    for n in range(repeats + 10):  # the first 10: warm-up
        one = classifier.preprocessing.normalize(images[n % len(images)][None]).contiguous()
        started = time.perf_counter()
        with torch.inference_mode():
            view_logits(classifier.model, one, views)
        middle = time.perf_counter()
        session.run(["logits"], {"pixel_values": one.numpy()})
        ended = time.perf_counter()
        if n >= 10:
            times["pytorch_eager"].append((middle - started) * 1e3)
            times["onnxruntime"].append((ended - middle) * 1e3)
    return {
        name: {
            "p50_ms": round(statistics.median(t), 3),
            "p90_ms": round(statistics.quantiles(t, n=10)[-1], 3),
        }
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", default="digits")
    parser.add_argument("--time", default="5m", help="Training budget of the model exported.")
    parser.add_argument("--parity-images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=500, help="Batch-1 latency samples per runtime.")
    parser.add_argument("--name", default="export_onnx")
    parser.add_argument(
        "--out", type=Path, default=None, help="Results folder [default: benchmarks/results]."
    )
    parser.add_argument("--quick", action="store_true", help="A 1-epoch digits model, few samples (tests).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        load_before = load_average()
        options = (
            {"epochs": 1, "model": "foveal-tiny"}
            if args.quick
            else {"time_budget": parse_duration(args.time)}
        )
        result = foveal.train(data=args.data, out=scratch, quiet=True, report=False, **options)
        started = time.perf_counter()
        bundle = foveal.export(
            result.run_dir, format="onnx", data=args.data, parity_images=args.parity_images
        )
        export_seconds = time.perf_counter() - started
        parity = json.loads((bundle / "parity.json").read_text())
        classifier = foveal.load(result.run_dir, device="cpu")
        held_out, _ = load_evaluation_data(args.data, classifier.classes, classifier.preprocessing)
        timings = latency(classifier, bundle, held_out.images, 20 if args.quick else args.repeats)
        record = {
            "model": classifier.info.config.name,
            "img_size": classifier.preprocessing.img_size,
            "test_time_views": classifier.preprocessing.test_time_views,
            "held_out_top1": round(result.metrics.top1, 4),
            "onnxruntime": onnxruntime.__version__,
            "threads": torch.get_num_threads(),
            "export_and_parity_seconds": round(export_seconds, 1),
            "parity": parity,
            "batch1_latency": timings,
            "onnx_vs_eager_p50": round(
                timings["pytorch_eager"]["p50_ms"] / timings["onnxruntime"]["p50_ms"], 2
            ),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
    save(args.name, record, args.out)


if __name__ == "__main__":
    main()
