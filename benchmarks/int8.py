"""INT8 per preset: what onnxruntime's dynamic quantisation costs in top-1 and gains in batch-1 speed.

    python benchmarks/int8.py ../shared/data/cifar10 --time 2m --models foveal-nano foveal-micro ...
    python benchmarks/int8.py --quick          # CI: a 1-epoch digits model

Each preset is trained for --time, exported with `foveal.export(format="int8", force=True)` and
checked on every held-out image (10,000 for CIFAR-10): top-1 of fp32 and INT8 ONNX, agreement, and
batch-1 p50 latency of both, interleaved (exporting/quantize.check_int8). For the first preset the
variant that also quantises Conv layers is measured beside it, which is why Conv stays fp32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import load_average, save

import foveal
from foveal.config import parse_duration
from foveal.data.sources import load_evaluation_data
from foveal.exporting.quantize import QUANTIZED_OPS, check_int8, quantize_int8


def conv_variant(bundle: Path, data: str) -> dict:
    """INT8 with Conv quantised too (ConvInteger), against the same fp32 model and images."""
    classifier = foveal.load(bundle / "model.onnx")
    held_out, description = load_evaluation_data(data, classifier.classes, classifier.preprocessing)
    with_conv = quantize_int8(bundle / "model.onnx", bundle / "conv.int8.onnx", (*QUANTIZED_OPS, "Conv"))
    check = check_int8(
        bundle / "model.onnx", with_conv, classifier.preprocessing, held_out, description, force=True
    )
    return {**check.to_dict(), "quantized_ops": [*QUANTIZED_OPS, "Conv"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", default="digits")
    parser.add_argument("--time", default="2m", help="Training budget of each preset.")
    parser.add_argument("--models", nargs="+", default=["foveal-nano", "foveal-micro", "foveal-mini"])
    parser.add_argument("--name", default="int8")
    parser.add_argument(
        "--out", type=Path, default=None, help="Results folder [default: benchmarks/results]."
    )
    parser.add_argument("--quick", action="store_true", help="A 1-epoch digits model (tests).")
    parser.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="Keep the trained runs and bundles here (for `foveal bench`) [default: deleted].",
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.runs or temporary
        for n, model in enumerate(["foveal-tiny"] if args.quick else args.models):
            load_before = load_average()
            options = {"epochs": 1} if args.quick else {"time_budget": parse_duration(args.time)}
            result = foveal.train(
                data=args.data, model=model, out=scratch, name=model, quiet=True, report=False, **options
            )
            started = time.perf_counter()
            bundle = foveal.export(
                result.run_dir, format="int8", data=args.data, parity_images=10_000, force=True
            )
            row = {
                "model": model,
                "training": options,
                "int8": json.loads((bundle / "int8.json").read_text()),
                "export_seconds": round(time.perf_counter() - started, 1),
            }
            if n == 0:
                row["with_conv"] = conv_variant(bundle, args.data)
            row["load_average_before"], row["load_average_after"] = load_before, load_average()
            rows.append(row)
            check = row["int8"]
            print(
                f"{model}: fp32 {check['fp32_top1']:.2%} -> int8 {check['int8_top1']:.2%} "
                f"({check['accuracy_change_points']:+.2f} points, agreement {check['top1_agreement']:.2%}), "
                f"batch-1 p50 {check['fp32_batch1_p50_ms']:.3f} -> {check['int8_batch1_p50_ms']:.3f} ms "
                f"({check['speedup']:.2f}x)"
            )
            if "with_conv" in row:
                conv = row["with_conv"]
                print(
                    f"  with Conv quantised too: {conv['accuracy_change_points']:+.2f} points, "
                    f"batch-1 p50 {conv['int8_batch1_p50_ms']:.3f} ms ({conv['speedup']:.2f}x)"
                )
    save(args.name, {"data": args.data, "presets": rows}, args.out)


if __name__ == "__main__":
    main()
