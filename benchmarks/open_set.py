"""Open-set rejection measured: does a model's familiarity score tell its classes from images of none?

    python benchmarks/open_set.py ../shared/data/cifar10 --time 5m
    python benchmarks/open_set.py ../shared/data/cifar10 --quick      # CI: small data, seconds

Two cases, each a real `foveal.train` run whose calibrated threshold (foveal/rejection.py) is used
as saved:
  (a) other images: the digits model (built-in digits, its default recipe) against CIFAR-10 test
      images. In-distribution: its held-out digits (the images the threshold was calibrated on).
  (b) held-out classes: a model trained for --time on the first 6 CIFAR-10 classes (train/ only;
      Foveal holds 10% out and calibrates on them) against the test images of the other 4.
      In-distribution: the 6 classes' test images, which the run never saw.
For each score, the AUROC of telling in from out (1.0: perfect, 0.5: chance), and at a threshold
that rejects 5% of the held-out calibration images: the share of in-distribution images rejected
(FRR) and of out-of-distribution images accepted (FAR). Scores: msp and energy (shipped options,
from the logits), and a Mahalanobis distance on the pooled features (class means and one shared
covariance from the training images; measured here only, to choose by).
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
from foveal.rejection import DEFAULT_FALSE_REJECTION_RATE, SCORES, familiarity, threshold_at
from foveal.runs import RunRecord

SCORES_MEASURED = (*SCORES, "mahalanobis")
KNOWN_CLASSES = 6  # case (b): the first six CIFAR-10 classes by name are known, the other four are not


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cifar10", type=Path, help="root with train/<class>/ and test/<class>/")
    parser.add_argument("--time", default="5m", help="case (b)'s training budget")
    parser.add_argument("--ood-images", type=int, default=2000, help="CIFAR-10 test images for case (a)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
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
        train_seconds = round(time.perf_counter() - started, 1)
        case = f"(b) {len(known)} CIFAR-10 classes vs the other {len(unknown)}"
        rows += measure_case(
            case,
            six.run_dir,
            test_files(args.cifar10, known, per_class),
            test_files(args.cifar10, unknown, per_class),
        )
        rows[-1]["train_seconds"] = train_seconds
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


def measure_case(
    case: str, run: Path, inside: list[Path] | None, outside: list[Path]
) -> list[dict[str, Any]]:
    """One row per score: AUROC and the rates at a 5%-FRR threshold set on the run's held-out images.
    `inside`: in-distribution test files (None: the held-out images themselves)."""
    classifier = foveal.load(run, device="cpu")
    data = RunRecord.read(run).load_data("the open-set benchmark")
    size = classifier.preprocessing.img_size
    held_out = data.val.images
    inside_images = held_out if inside is None else decode_paths(inside, size)[0]
    outside_images = decode_paths(outside, size)[0]
    mahalanobis = Mahalanobis.fit(classifier, data.train.images, data.train.labels)
    image_sets = {"calibration": held_out, "in": inside_images, "out": outside_images}
    logits = {key: classifier.logits(images) for key, images in image_sets.items()}
    rows = []
    for score in SCORES_MEASURED:
        if score == "mahalanobis":
            scores = {key: mahalanobis.score(classifier, images) for key, images in image_sets.items()}
        else:
            scores = {key: familiarity(values, score) for key, values in logits.items()}
        calibration, ins, outs = scores["calibration"], scores["in"], scores["out"]
        threshold = torch.tensor(threshold_at(calibration, DEFAULT_FALSE_REJECTION_RATE))
        shipped = classifier.rejection is not None and classifier.rejection.score == score
        if shipped:  # the threshold the saved model carries, not one set again here
            threshold = torch.tensor(classifier.rejection.threshold)
        target = torch.cat([torch.ones(len(ins)), torch.zeros(len(outs))]).long()
        rows.append(
            {
                "case": case,
                "score": score,
                "shipped": shipped,
                "auroc": round(float(binary_auroc(torch.cat([ins, outs]), target)), 4),
                "frr": round(float((ins < threshold).float().mean()), 4),
                "far": round(float((outs >= threshold).float().mean()), 4),
                "threshold": float(threshold),
                "calibration_images": len(calibration),
                "in_images": len(ins),
                "out_images": len(outs),
                "model": classifier.info.config.name,
            }
        )
        print(rows[-1])
    return rows


class Mahalanobis:
    """Negative smallest Mahalanobis distance of an image's pooled features to a class mean, with
    one covariance shared by the classes (Lee et al. 2018, without input perturbation)."""

    def __init__(self, means: torch.Tensor, precision: torch.Tensor) -> None:
        self.means, self.precision = means, precision  # (K, C), (C, C)

    @classmethod
    def fit(cls, classifier, images: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        features = pooled_features(classifier, images)  # (N, C)
        means = torch.stack([features[labels == k].mean(0) for k in range(len(classifier.classes))])
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        covariance += 1e-4 * covariance.diagonal().mean() * torch.eye(len(covariance))  # well-conditioned
        return cls(means, torch.linalg.inv(covariance))

    def score(self, classifier, images: torch.Tensor) -> torch.Tensor:
        features = pooled_features(classifier, images)
        differences = features[:, None, :] - self.means[None]  # (N, K, C)
        distances = torch.einsum("nkc,cd,nkd->nk", differences, self.precision, differences)
        return -distances.min(dim=1).values


@torch.inference_mode()
def pooled_features(classifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, C) float64: the vector the head reads, for uint8 images (N, 3, S, S), one view each."""
    model, out = classifier.model.eval(), []
    for start in range(0, len(images), batch_size):
        batch = classifier.preprocessing.normalize(images[start : start + batch_size].to(classifier.device))
        out.append(model.pool(model.forward_features(batch).tokens)[0].double().cpu())
    return torch.cat(out)


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
