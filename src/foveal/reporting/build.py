"""The evaluation report of a run: everything a person needs to judge a model, on one page.

`write_report(run_dir)` (or `foveal report RUN`) reloads the run's held-out images and its best
model, and writes run_dir/report.html: data summary, training curves, confusion matrix, per-class
precision/recall/F1, top-1/top-k, calibration, the worst mistakes with where the model looked,
whether its maps point at the object (the pointing game), how faithful each explanation method is,
the CNN comparison when the run has one, and the configuration and timings. After `foveal train
--time`, the explaining sections take what the budget left them (explanation/report_plan.py), or are
left out with a hint naming `foveal report RUN`.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from statistics import median

import torch

from foveal.data.sources import DataSplits
from foveal.errors import FovealError
from foveal.evaluation.metrics import ClassificationMetrics
from foveal.evaluation.plots import plot_confusion_matrix, plot_training_curves
from foveal.evaluation.workflow import Evaluation, evaluate
from foveal.explanation.faithfulness import faithfulness_rows
from foveal.explanation.report_plan import FAITHFULNESS_IMAGES, MIN_FAITHFULNESS_IMAGES, ReportPlan
from foveal.explanation.workflow import explain_images, measure_faithfulness
from foveal.io import atomic_write_text
from foveal.messages import counted, say
from foveal.predictor.classifier import load
from foveal.predictor.inference import Outputs
from foveal.predictor.rejection import Rejection
from foveal.reporting import page as html
from foveal.reporting import pointing
from foveal.reporting.calibration import Calibration, calibration
from foveal.reporting.comparison import comparison_rows
from foveal.reporting.figures import (
    plot_class_counts,
    plot_faithfulness,
    plot_familiarity,
    plot_mistakes,
    plot_reliability,
)
from foveal.runs import RunRecord

IMBALANCE_RATIO = 3.0  # the largest class over the smallest beyond which the report warns
FAITHFULNESS_BATCH = 64  # images a faithfulness chunk holds at most (its curves' passes are batched)


def write_report(
    run_dir: str | Path,
    *,
    data: DataSplits | None = None,
    evaluation: Evaluation | None = None,
    device: str = "auto",
    quiet: bool = False,
    plan: ReportPlan | None = None,
) -> Path:
    """Write run_dir/report.html and return its path, saying on stderr what it is doing (unless quiet).

    Args:
        data: the run's images, if already in memory (training passes them); else reloaded from the
            run's data set and split, as recorded in its folder.
        evaluation: the saved model's evaluation on `data.val`, if already made (training's final
            evaluation); else made here.
        plan: how many images the explaining sections use (a time budget's `TrainResult.report_plan`);
            None: the whole report.
    """
    plan = ReportPlan() if plan is None else plan
    record = RunRecord.read(run_dir)
    model_path = _model_file(record.run_dir)
    classifier = load(model_path, device)
    if data is None:
        say(f"report: loading the images of {record.run_dir}", quiet)
        data = record.load_data("the report")
    val = data.val
    if val.classes != classifier.classes:
        raise FovealError(
            f"the run's data now has classes {val.classes}, but its model was trained on "
            f"{classifier.classes}; the report needs the data the run was trained on."
        )
    if evaluation is None or evaluation.metrics.num_samples != len(val):
        say(f"report: evaluating the model on {len(val):,} held-out images", quiet)
        evaluation = evaluate(classifier.network, val, classifier.preprocessing, device=classifier.device)
    metrics, logits = evaluation.metrics, evaluation.logits
    again = f"foveal report {shlex.quote(str(record.run_dir))}"  # the whole report, without a budget
    with tempfile.TemporaryDirectory() as scratch:
        pictures = Path(scratch)
        sections = [
            _data_section(record, data, pictures),
            _training_section(record, metrics.top_k if metrics.shows_top_k else None, pictures),
            _evaluation_section(metrics, pictures),
            _calibration_section(calibration(logits, val.labels), pictures),
            _rejection_section(classifier.rejection, evaluation.outputs, val.labels, pictures),
            _mistakes_section(classifier, data, logits, plan, again, pictures, quiet),
            pointing.pointing_section(
                classifier,
                val,
                plan,
                lambda: _left_out(pointing.TITLE, "the pointing game", again, quiet),
                quiet,
            ),
            _faithfulness_section(classifier, data, plan, again, pictures, quiet),
            _comparison_section(record.run_dir),
            _configuration_section(record, model_path),
        ]
    name = record.train_config.model.preset or record.config.get("model", {}).get("name", "model")
    subtitle = f"{record.run_dir} · {name} · {record.config.get('data', '')}"
    page = html.page(f"Foveal report: {record.run_dir.name}", subtitle, [s for s in sections if s])
    return atomic_write_text(record.run_dir / "report.html", page)


def _model_file(run_dir: Path) -> Path:
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / "weights" / name).is_file():
            return run_dir / "weights" / name
    raise FovealError(
        f"{run_dir} has no saved model yet (weights/best.safetensors); a report needs a run that "
        "finished at least one epoch."
    )


def _data_section(record: RunRecord, data: DataSplits, pictures: Path) -> str:
    classes, train_counts, val_counts = data.classes, data.train.class_counts, data.val.class_counts
    parts = [html.paragraph(f"{data.description}; {len(classes)} classes.")]
    smallest, largest = min(train_counts), max(train_counts)
    if smallest == 0 or largest / smallest > IMBALANCE_RATIO:
        rare = classes[train_counts.index(smallest)]
        parts.append(
            html.paragraph(
                f"Imbalanced classes: the largest has {largest} training images, the smallest ({rare}) "
                f"{smallest}. Top-1 favours the large classes; read the per-class recall and macro F1.",
                "warn",
            )
        )
    parts.append(
        html.image_tag(
            plot_class_counts(classes, train_counts, val_counts, pictures / "counts.png"), "images per class"
        )
    )
    if record.skipped:
        shown = record.skipped[:50]
        said = f"{counted(len(record.skipped), 'file')} could not be used and were skipped:"
        parts.append(html.paragraph(said, "warn"))
        parts.append(html.table(["file", "reason"], shown))
        if len(record.skipped) > 50:
            parts.append(html.paragraph(f"... and {len(record.skipped) - 50} more (skipped.txt lists all)."))
    else:
        parts.append(html.paragraph("No file was skipped."))
    return html.section("Data", *parts)


def _training_section(record: RunRecord, top_k: int | None, pictures: Path) -> str:
    if not record.results:
        return html.section("Training", html.paragraph("No epoch was recorded (results.csv is missing)."))
    curves = plot_training_curves(record.run_dir / "results.csv", pictures / "curves.png", top_k=top_k)
    seconds = [float(r["seconds"]) for r in record.results if r.get("seconds")]
    speed = [float(r["images_per_second"]) for r in record.results if r.get("images_per_second")]
    timings = [
        ("epochs", len(record.results)),
        ("time in training steps", f"{sum(seconds):.1f} s"),
        ("median train images/s", f"{median(speed):.0f}" if speed else "n/a"),
        ("device", record.config.get("device", "?")),
        ("threads", record.config.get("threads", "?")),
        ("torch", record.config.get("torch", "?")),
    ]
    return html.section("Training", html.image_tag(curves, "training curves"), html.table(["", ""], timings))


def _evaluation_section(metrics: ClassificationMetrics, pictures: Path) -> str:
    confusion = plot_confusion_matrix(metrics.confusion, metrics.class_names, pictures / "confusion.png")
    rows = [
        [name, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", s]
        for name, p, r, f, s in zip(
            metrics.class_names, metrics.precision, metrics.recall, metrics.f1, metrics.support
        )
    ]
    rows.append(
        [
            "macro avg",
            f"{metrics.macro_precision:.3f}",
            f"{metrics.macro_recall:.3f}",
            f"{metrics.macro_f1:.3f}",
            metrics.num_samples,
        ]
    )
    top_k = [(f"top-{metrics.top_k}", f"{metrics.top5:.2%}")] if metrics.shows_top_k else []
    summary = html.cards(
        [
            ("top-1", f"{metrics.top1:.2%}"),
            *top_k,
            ("macro F1", f"{metrics.macro_f1:.3f}"),
            ("held-out images", str(metrics.num_samples)),
        ]
    )
    return html.section(
        "Evaluation on the held-out images",
        summary,
        html.image_tag(confusion, "confusion matrix"),
        html.table(["class", "precision", "recall", "F1", "support"], rows),
    )


def _calibration_section(cal: Calibration, pictures: Path) -> str:
    text = (
        f"Expected calibration error {cal.ece:.2%}: on average a prediction's confidence is this far "
        "from how often such predictions are right (15 equal-width bins)."
    )
    return html.section(
        "Calibration",
        html.paragraph(text),
        html.image_tag(plot_reliability(cal, pictures / "reliability.png"), "reliability diagram"),
    )


def _rejection_section(
    rejection: Rejection | None, outputs: Outputs, labels: torch.Tensor, pictures: Path
) -> str:
    if rejection is None:
        text = "This model carries no familiarity threshold (it was saved before Foveal calibrated one)."
        return html.section("Open-set rejection", html.paragraph(text))
    scores = rejection.familiarity(outputs)
    right = outputs.logits.argmax(dim=1) == labels
    unknown = scores < rejection.threshold

    def share(mask: torch.Tensor) -> float:  # of the images in `mask`, the share marked unknown
        return float(unknown[mask].float().mean()) if mask.any() else 0.0

    text = (
        f'An image unlike every class is answered "unknown": {rejection.describe()}. Here '
        f"{int(unknown.sum()):,} of {len(scores):,} held-out images fall below it: {share(~right):.0%} "
        f"of the wrong predictions and {share(right):.0%} of the right ones. "
        "`foveal predict --no-reject` always answers a class."
    )
    figure = plot_familiarity(
        scores[right].numpy(), scores[~right].numpy(), rejection, pictures / "familiarity.png"
    )
    return html.section(
        "Open-set rejection", html.paragraph(text), html.image_tag(figure, "familiarity histogram")
    )


def _mistakes_section(
    classifier,
    data: DataSplits,
    logits: torch.Tensor,
    plan: ReportPlan,
    again: str,
    pictures: Path,
    quiet: bool,
) -> str:
    """The plan's count of wrong predictions made with the highest confidence, explained (0, or no
    time left: the hint to run `again`, the command that writes the whole report)."""
    count = plan.worst_mistakes if plan.limit.seconds_left() > 0 else 0
    probs = logits.softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != data.val.labels).nonzero().squeeze(1)
    if wrong.numel() == 0:
        return html.section("Worst mistakes", html.paragraph("The model got every held-out image right."))
    if count == 0:
        return _left_out("Worst mistakes", "explaining them", again, quiet)
    worst = wrong[confidence[wrong].argsort(descending=True)[:count]]
    sources = [(data.val.paths[i] if data.val.paths else "") or f"image {i}" for i in worst.tolist()]
    say(f"report: explaining the {len(worst)} worst mistakes", quiet)
    explanations = explain_images(classifier, data.val.images[worst], sources, top_k=1)
    titles = [
        f"{e.labels[0]} {e.probabilities[0]:.0%}\n(true: {data.classes[int(data.val.labels[i])]})"
        for e, i in zip(explanations, worst.tolist())
    ]
    picture = plot_mistakes(
        [e.image for e in explanations],
        [e.pixel_map for e in explanations],
        titles,
        pictures / "mistakes.png",
    )
    method = explanations[0].method
    return html.section(
        "Worst mistakes",
        html.paragraph(
            f"The {len(worst)} wrong predictions made with the highest confidence, of {wrong.numel()} "
            f"wrong in all; the overlay is the {method} map of the predicted class."
        ),
        html.image_tag(picture, "worst mistakes"),
        html.table(
            ["image", "predicted", "confidence", "true"],
            [
                [s, e.labels[0], f"{e.probabilities[0]:.1%}", data.classes[int(data.val.labels[i])]]
                for s, e, i in zip(sources, explanations, worst.tolist())
            ],
        ),
    )


def _faithfulness_section(
    classifier, data: DataSplits, plan: ReportPlan, again: str, pictures: Path, quiet: bool
) -> str:
    """Deletion and insertion scores on the plan's count of evenly spaced held-out images, or as
    many of them as its limit leaves time for (fewer than the floor: the hint to run `again`)."""
    if len(data.val) < 2:
        return ""
    title = "Faithfulness of the explanations"
    if plan.faithfulness_images == 0:
        return _left_out(title, "measuring it", again, quiet)
    sample = data.val.evenly_spaced(plan.faithfulness_images)
    # In a shuffled order (the same every time), so that the images a limit leaves time for are a
    # sample of every class, not the first classes' images.
    order = torch.randperm(len(sample), generator=torch.Generator().manual_seed(0))
    whole = min(FAITHFULNESS_IMAGES, len(data.val))  # what a report without a budget measures
    say(f"report: measuring how faithful the explanations are on {len(sample)} images", quiet)
    batch_size = plan.chunk(len(sample), FAITHFULNESS_BATCH)
    scores = measure_faithfulness(classifier, sample.images[order], limit=plan.limit, batch_size=batch_size)
    count = scores[0].images if scores else 0
    if count < min(MIN_FAITHFULNESS_IMAGES, len(sample)):
        return _left_out(title, "measuring it", again, quiet)
    return html.section(
        title,
        html.paragraph(
            f"Deletion and insertion curves on {count} evenly spaced held-out images, each map explaining "
            "the predicted class: removing the pixels a faithful map marks first makes the probability "
            "fall fast (low deletion area), showing them first makes it rise fast (high insertion area). "
            "Random maps on the same token grid are the yardstick; the margin over them is per image, "
            "with its standard error (±). The command foveal explain RUN DATA --faithfulness measures "
            "more images."
            + (f" The time budget left room for {count}; {again} measures {whole}." if count < whole else "")
        ),
        html.image_tag(plot_faithfulness(scores, pictures / "faithfulness.png"), "faithfulness curves"),
        html.table(*faithfulness_rows(scores)),
    )


def _left_out(title: str, what: str, again: str, quiet: bool) -> str:
    """A section the time budget left no room for: one line naming `again`, the command that writes
    the whole report."""
    hint = f"Left out to keep the time budget (--time): {again} writes it, {what} included."
    say(f"report: {title.lower()}: {hint[0].lower()}{hint[1:]}", quiet)
    return html.section(title, html.paragraph(hint))


def _comparison_section(run_dir: Path) -> str:
    path = run_dir / "comparison.json"
    if not path.is_file():
        return ""
    header, rows = comparison_rows(json.loads(path.read_text()))
    return html.section("Comparison", html.table(header, rows))


def _configuration_section(record: RunRecord, model_path: Path) -> str:
    return html.section(
        "Configuration",
        html.paragraph(f"Model file: {model_path}"),
        html.preformatted({k: record.config[k] for k in record.config if k not in ("classes",)}),
    )
