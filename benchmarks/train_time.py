"""Time a training run end to end with `foveal.train` (the library's own loop), and record it.

    python benchmarks/train_time.py digits --name quickstart                  # the README's quick start
    python benchmarks/train_time.py ../shared/data/cifar10 --model foveal-small --epochs 1 \
        --name cifar10_one_epoch
    python benchmarks/train_time.py ../shared/data/cifar10 --quick             # CI: 40 images a class

Figures: wall clock from the call to the saved model (decoding included), held-out top-1 (final
and best epoch), training images/s, and model FLOP utilisation against the CPU's fp32 peak.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import CPU_PEAK_GFLOPS, forward_flops, load_average, measured_matmul_gflops, save

import foveal
from foveal.config import parse_duration
from foveal.runtime import process_start


def subset_folder(source: Path, destination: Path, per_class: int) -> Path:
    """A copy of `source` (root/{train,test}/<class>/) with the first `per_class` files of each class,
    as symbolic links: quick mode exercises the same code on a fraction of the data."""
    for split in ("train", "test"):
        if not (source / split).is_dir():
            continue
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            target = destination / split / class_dir.name
            target.mkdir(parents=True)
            for file in sorted(class_dir.iterdir())[:per_class]:
                (target / file.name).symlink_to(file.resolve())
    return destination


def parse_settings(settings: list[str]) -> dict[str, object]:
    """{"ema_decay": 0.0, ...} from ["ema_decay=0", ...]: numbers, true/false and none are parsed."""
    options: dict[str, object] = {}
    for setting in settings:
        key, _, text = setting.partition("=")
        lowered = text.lower()
        if lowered in ("true", "false", "none"):
            options[key] = {"true": True, "false": False, "none": None}[lowered]
            continue
        try:
            options[key] = int(text)
        except ValueError:
            try:
                options[key] = float(text)
            except ValueError:
                options[key] = text
    return options


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data")
    parser.add_argument("--model", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--time", default=None, help="a time budget, e.g. 10m (replaces --epochs)")
    parser.add_argument("--name", default=None, help="results/<name>.json")
    parser.add_argument("--quick", action="store_true", help="40 images a class, 1 epoch (for CI)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON [benchmarks/results]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="any other training option, e.g. --set ema_decay=0 --set auto_augment=trivial",
    )
    args = parser.parse_args()

    options = {k: v for k, v in {"model": args.model, "epochs": args.epochs}.items() if v is not None}
    options.update(parse_settings(args.set))
    if args.time:
        options["time_budget"] = parse_duration(args.time)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if args.quick:
            options["epochs"] = 1
            if Path(data).is_dir():
                data = str(subset_folder(Path(data), Path(scratch) / "subset", per_class=40))
        load_before = load_average()
        result = foveal.train(
            data=data, out=str(Path(scratch) / "runs"), quiet=True, started=process_start(), **options
        )
        # The command's start to the saved model, as a user would time it; report.html comes after.
        wall = result.seconds
        report_seconds = time.perf_counter() - process_start() - wall
        trained = foveal.load(result.run_dir, device="cpu")
        config = trained.info
        flops = forward_flops(trained.model, config.preprocessing.img_size)
    train_gflops = result.train_images_per_second * 3 * flops / 1e9  # backward ~ 2x forward
    record = {
        "data": args.data,
        "quick": args.quick,
        "model": config.config.name,
        "epochs": result.epochs,
        "passes": round(result.passes, 2),
        "img_size": config.preprocessing.img_size,
        "wall_seconds": round(wall, 1),
        "report_seconds": round(report_seconds, 1),
        "data_seconds": round(result.data_seconds, 1),
        "test_top1": round(result.metrics.top1, 4),  # the kept model on every held-out image
        "final_top1": round(result.final_top1, 4),  # per-epoch validation (a subset under --time)
        "best_top1": round(result.best_top1, 4),
        "best_epoch": result.best_epoch,
        "macro_f1": round(result.metrics.macro_f1, 4),
        "train_images_per_second": round(result.train_images_per_second, 1),
        "forward_mflops_per_image": round(flops / 1e6, 2),
        "train_gflops_per_second": round(train_gflops, 1),
        "mfu_vs_cpu_peak": round(train_gflops / CPU_PEAK_GFLOPS, 3),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "options": options,
    }
    matmul = measured_matmul_gflops()  # after the run, so it does not eat the budget
    record["matmul_gflops_measured"] = matmul
    record["mfu_vs_measured_matmul"] = round(train_gflops / matmul, 3)
    name = args.name or ("quick_" if args.quick else "") + Path(args.data).name
    save(name, record, args.out)


if __name__ == "__main__":
    main()
