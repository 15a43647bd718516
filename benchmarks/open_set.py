"""Open-set rejection measured: does a model's familiarity score tell its classes from images of none?

    python benchmarks/open_set.py ../shared/data/cifar10 --time 5m
    python benchmarks/open_set.py ../shared/data/cifar10 --quick      # CI: small data, seconds
    python benchmarks/open_set.py --photos ../shared/data/hymenoptera ../shared/data/pets --time 2m

Two cases, each a real `foveal.train` run whose calibrated threshold (foveal/predictor/rejection.py) is used
as saved:
  (a) other images: the digits model (built-in digits, its default recipe) against CIFAR-10 test
      images. In-distribution: its held-out digits (the images the threshold was calibrated on).
  (b) held-out classes: a model trained for --time on the first 6 CIFAR-10 classes (train/ only;
      Foveal holds 10% out and calibrates on them) against the test images of the other 4.
      In-distribution: the 6 classes' test images, which the run never saw.
  (c) photos (--photos KNOWN OTHER, this case only): a model trained for --time on KNOWN's train/
      (ants and bees), its own held-out val/ photos against OTHER's test/ photos (cats and dogs).
      Besides the rates at the shipped threshold, the curve: the share of OTHER marked unknown
      while 80 to 99% of KNOWN's held-out photos are accepted.
For each score, the AUROC of telling in from out (1.0: perfect, 0.5: chance), and at a threshold
that rejects 5% of the held-out calibration images: the share of in-distribution images rejected
(FRR) and of out-of-distribution images accepted (FAR). Scores (foveal/predictor/rejection.py): mahalanobis
on the pooled features (the default: the run's own saved threshold and statistics), msp and energy
from the logits (calibrated here with `rejection.calibrate` on the same held-out images).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import load_average, save
from torchmetrics.functional.classification import binary_auroc

import foveal
from foveal.config import parse_duration
from foveal.data.files import collect_images, decode_paths
from foveal.predictor.rejection import SCORES, calibrate
from foveal.runs import RunRecord

KNOWN_CLASSES = 6  # case (b): the first six CIFAR-10 classes by name are known, the other four are not


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cifar10", type=Path, nargs="?", help="root with train/<class>/ and test/<class>/")
    parser.add_argument("--photos", type=Path, nargs=2, metavar=("KNOWN", "OTHER"), help="case (c) only")
    parser.add_argument("--time", default="5m", help="case (b)'s training budget")
    parser.add_argument("--ood-images", type=int, default=2000, help="CIFAR-10 test images for case (a)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.photos:
        return photos_case(*args.photos, args)
    if args.cifar10 is None:
        parser.error("give the CIFAR-10 root, or --photos KNOWN OTHER")
    per_class = 40 if args.quick else None
    rows: list[dict[str, Any]] = []
    name = args.name or ("quick_open_set" if args.quick else "open_set")
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "runs"
        started, load_before = time.perf_counter(), load_average()
        digits = foveal.train(
            data="digits", out=str(runs), quiet=True, **({"epochs": 1} if args.quick else {})
        )
        cifar_files = evenly_spaced(
            collect_images([args.cifar10 / "test"]), 100 if args.quick else args.ood_images
        )
        rows += measure_case("(a) digits model vs CIFAR-10 images", digits.run_dir, None, cifar_files)
        rows[-1]["train_seconds"] = round(time.perf_counter() - started, 1)

        known_root, known, unknown = split_classes(args.cifar10, Path(scratch) / "known", per_class)
        budget = 20.0 if args.quick else parse_duration(args.time)
        started = time.perf_counter()
        six = foveal.train(
            data=str(known_root), out=str(runs), quiet=True, time_budget=budget, started=started
        )
        train_seconds = round(time.perf_counter() - started, 1)  # the report included
        model_seconds = round(six.seconds, 1)  # to the saved, evaluated, calibrated model: the budget
        case = f"(b) {len(known)} CIFAR-10 classes vs the other {len(unknown)}"
        rows += measure_case(
            case,
            six.run_dir,
            test_files(args.cifar10, known, per_class),
            test_files(args.cifar10, unknown, per_class),
        )
        rows[-1]["train_seconds"] = train_seconds
        rows[-1]["model_seconds"] = model_seconds
        rows[-1]["known_test_top1"] = round(six.metrics.top1, 4)
    record = {
        "quick": args.quick,
        "time_budget_b": args.time,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rows": rows,
    }
    save(name, record, args.out)
    print("\n| case | score | AUROC | FRR at threshold | FAR at threshold |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {row['score']}{' (shipped)' if row['shipped'] else ''} | "
            f"{row['auroc']:.3f} | {row['frr']:.1%} | {row['far']:.1%} |"
        )


ACCEPTED_SHARES = (0.80, 0.85, 0.90, 0.95, 0.99)  # case (c)'s curve: in-distribution photos accepted


def photos_case(known: Path, other: Path, args: argparse.Namespace) -> None:
    """Case (c): a model of KNOWN's classes against OTHER's test photos; rows and the curve saved."""
    name = args.name or "open_set_photos"
    with tempfile.TemporaryDirectory() as scratch:
        load_before, started = load_average(), time.perf_counter()
        budget = parse_duration(args.time)
        run = foveal.train(
            data=str(known), out=str(Path(scratch) / "runs"), quiet=True, time_budget=budget, started=started
        )
        others = evenly_spaced(collect_images([other / "test"]), args.ood_images)
        case = f"(c) {known.name} model vs {other.name} photos"
        rows = measure_case(case, run.run_dir, None, others, curve=ACCEPTED_SHARES)
    record = {
        "time_budget": args.time,
        "known_test_top1": round(run.metrics.top1, 4),
        "model_seconds": round(run.seconds, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rows": rows,
    }
    save(name, record, args.out)
    shares = " | ".join(f"{s:.0%} accepted" for s in ACCEPTED_SHARES)
    print(f"\n| score | AUROC | {shares} |\n|---|---|" + "---|" * len(ACCEPTED_SHARES))
    for row in rows:
        unknown = " | ".join(f"{u:.1%}" for u in row["other_unknown_at_accepted"].values())
        print(f"| {row['score']} | {row['auroc']:.3f} | {unknown} |")


def measure_case(
    case: str, run: Path, inside: list[Path] | None, outside: list[Path], curve: tuple[float, ...] = ()
) -> list[dict[str, Any]]:
    """One row per score: AUROC and the rates at a 5%-FRR threshold set on the run's held-out images.
    `inside`: in-distribution test files (None: the held-out images themselves). With `curve`, the
    share of `outside` marked unknown at thresholds that accept each of those shares of `inside`."""
    classifier = foveal.load(run, device="cpu")
    held_out = RunRecord.read(run).load_data("the open-set benchmark").val.images
    preprocessing = classifier.preprocessing
    inside_images = held_out if inside is None else decode_paths(inside, preprocessing)[0]
    outputs = {
        key: classifier.outputs(images)
        for key, images in (
            ("calibration", held_out),
            ("in", inside_images),
            ("out", decode_paths(outside, preprocessing)[0]),
        )
    }
    shipped = classifier.rejection
    rows = []
    for score in SCORES:
        # the saved model's own threshold for its score; the others calibrated alike, here
        rejection = shipped if shipped.score == score else calibrate(outputs["calibration"], score=score)
        ins, outs = rejection.familiarity(outputs["in"]), rejection.familiarity(outputs["out"])
        target = torch.cat([torch.ones(len(ins)), torch.zeros(len(outs))]).long()
        rows.append(
            {
                "case": case,
                "score": score,
                "shipped": rejection is shipped,
                "auroc": round(float(binary_auroc(torch.cat([ins, outs]), target)), 4),
                "frr": round(float((ins < rejection.threshold).float().mean()), 4),
                "far": round(float((outs >= rejection.threshold).float().mean()), 4),
                "threshold": rejection.threshold,
                "calibration_images": rejection.calibration_images,
                "in_images": len(ins),
                "out_images": len(outs),
                "model": classifier.info.config.name,
            }
        )
        if curve:
            rows[-1]["other_unknown_at_accepted"] = {
                f"{share:.2f}": round(float((outs < ins.quantile(1 - share)).float().mean()), 4)
                for share in curve
            }
        print(rows[-1])
    return rows


def split_classes(root: Path, destination: Path, per_class: int | None) -> tuple[Path, list[str], list[str]]:
    """destination/<class>/ linking root/train/<class>/ for the first KNOWN_CLASSES classes by name."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    known, unknown = classes[:KNOWN_CLASSES], classes[KNOWN_CLASSES:]
    for name in known:
        (destination / name).mkdir(parents=True)
        for file in sorted((root / "train" / name).iterdir())[:per_class]:
            (destination / name / file.name).symlink_to(file.resolve())
    return destination, known, unknown


def test_files(root: Path, classes: list[str], per_class: int | None) -> list[Path]:
    return [f for name in classes for f in sorted((root / "test" / name).iterdir())[:per_class]]


def evenly_spaced(files: list[Path], count: int) -> list[Path]:
    step = max(1, len(files) // count)
    return files[::step][:count]


if __name__ == "__main__":
    main()
