"""The public workflows behind `foveal.train`, `foveal.evaluate`, `foveal.explain` and
`foveal.report`: each joins the library's layers (training, evaluation, explanation, reporting) in
one call, so that the layers themselves never call each other upward."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from foveal import training
from foveal.data.imageset import ImageSet
from foveal.data.sources import load_evaluation_data
from foveal.errors import ConfigError
from foveal.evaluation.workflow import Evaluation, save_evaluation
from foveal.evaluation.workflow import evaluate as evaluate_images
from foveal.explanation.result import Explanation
from foveal.explanation.workflow import explain_inputs, save_explanations
from foveal.exporting.bundle import add_to_bundle_config, write_bundle
from foveal.exporting.graph import check_maps
from foveal.exporting.quantize import MAX_ACCURACY_DROP
from foveal.exporting.to_mlflow import require_mlflow, write_mlflow_model
from foveal.exporting.to_onnx import export_onnx
from foveal.predictor.classifier import Classifier, load
from foveal.predictor.rejection import RejectionCount
from foveal.reporting import write_report
from foveal.runs import RunRecord
from foveal.training import TrainConfig, TrainResult
from foveal.training.distributed import world_from_env
from foveal.training.progress import say
from foveal.training.records import append_event


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    started: float | None = None,
    **options: Any,
) -> TrainResult:
    """Train a classifier (or resume one), then write its report.html unless `report=False`.

    Args:
        config: a TrainConfig, or None to build one from `options` (e.g. data="digits", epochs=5).
        resume: a run folder to continue from its newest checkpoint, exactly as if never stopped.
        quiet: print nothing.
        started: `time.perf_counter()` value a time budget counts from (default: now).
        **options: TrainConfig fields by name; a misspelled one raises ConfigError.
    """
    report = functools.partial(_report_of_run, quiet=quiet)
    result = training.train(config, resume=resume, quiet=quiet, started=started, epilogue=report, **options)
    # The images served the report; the caller need not hold on to them.
    return dataclasses.replace(result, data=None)


def _report_of_run(result: TrainResult, quiet: bool) -> None:
    """report.html unless `report=False`, under torchrun rank 0's to write; the training loop calls it
    before its loggers record the run's end, so that MLflow keeps the report with the run."""
    if result.config.run.report and world_from_env().is_main:
        _write_report(result, quiet)


def _write_report(result: TrainResult, quiet: bool) -> None:
    """report.html, after the model is saved: a failure here must not cost the user the run. Under a
    time budget it explains what the time left affords (`result.report_plan`)."""
    try:
        path = write_report(
            result.run_dir,
            data=result.data,
            evaluation=result.evaluation,
            device=result.config.run.device,
            quiet=quiet,
            plan=result.report_plan,
        )
    except Exception as error:  # noqa: BLE001  (any failure: the trained model is already safe)
        say(
            f"warning: the report was not written ({error}); retry with `foveal report {result.run_dir}`",
            quiet,
        )
        append_event(result.run_dir, f"report failed: {error!r}")
        return
    say(f"report: {path}", quiet)


def evaluate(
    model: str | Path | Classifier,
    data: str,
    *,
    device: str = "auto",
    batch_size: int = 256,
    out: str | Path | None = None,
    flip: bool | None = None,
    reject: bool = True,
) -> Evaluation:
    """Evaluate a saved model on `data`.

    Args:
        model: a run folder, a saved .safetensors model, or a loaded `foveal.Classifier`.
        data: a built-in name (its held-out split), a data set root (its val/ or test/ folder), a
            folder of class folders (every image in it), or a table of labels (its test rows, else its
            val rows; every row without a split column).
        out: a folder to write metrics.json and confusion_matrix.png into (None: write nothing).
        flip: average each image's logits with its mirror image's (None: as the model was saved).
        reject: count the images the model's open-set threshold marks unknown (`Evaluation.rejection`;
            the top-1 and other scores count every image either way).
    """
    classifier = model if isinstance(model, Classifier) else load(model, device)
    preprocessing = classifier.preprocessing
    if flip is not None:
        preprocessing = preprocessing.with_views("flip" if flip else "none")
    images, description = load_evaluation_data(data, classifier.classes, preprocessing)
    evaluation = evaluate_images(
        classifier.network,
        images,
        preprocessing,
        device=classifier.device,
        batch_size=batch_size,
        data=description,
        model_file=classifier.source,
    )
    if reject and classifier.rejection is not None and evaluation.metrics.num_samples:
        evaluation.rejection = RejectionCount.of(classifier.rejection, evaluation.outputs)
    if out is not None:
        save_evaluation(evaluation, out)
    return evaluation


def explain(
    model: str | Path | Classifier,
    images: Sequence[str | Path] | str | Path | torch.Tensor,
    *,
    method: str | None = None,
    target: str | int | None = None,
    top_k: int = 5,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    out: str | Path | None = None,
    device: str = "auto",
) -> list[Explanation]:
    """Explain a model's predictions: `foveal.explain("runs/train", ["cat.jpg", "photos/"])`.

    Args:
        model: a `foveal.Classifier`, a run folder or a saved .safetensors model.
        images: image files and folders (searched recursively), or uint8 tensors (N, 3, S, S).
        method: pool, rollout, grad-rollout or gradcam [default: rollout; gradcam for a CNN].
        target: the class to explain (name or index) [default: each image's predicted class].
        out: a folder to write a PNG and JSON per image (and a contact sheet) into.

    Raises:
        FovealError: a method the model cannot use, an unknown class, or no decodable image.
    """
    classifier = model if isinstance(model, Classifier) else load(model, device)
    explanations, _ = explain_inputs(
        classifier,
        images,
        method=method,
        target=target,
        top_k=top_k,
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
    )
    if out is not None:
        save_explanations(explanations, out)
    return explanations


def export(
    model: str | Path,
    out: str | Path | None = None,
    *,
    format: Literal["bundle", "onnx", "int8", "mlflow"] = "bundle",
    maps: Sequence[str] = (),
    data: str | None = None,
    parity_images: int = 1_000,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    force: bool = False,
    license: str = "other",
    name: str | None = None,
) -> Path:
    """Export a saved model (a run folder, a .safetensors file or a bundle; or a public checkpoint, see
    foveal/pretrained/) as a self-describing bundle folder: config.json, model.safetensors and a model
    card README.md. With format="onnx", also model.onnx and parity.json, kept only when the ONNX model
    matches Foveal on real images; with format="int8", also model.int8.onnx and int8.json, kept only
    when INT8 loses at most `max_accuracy_drop` points of top-1 on them (unless `force`). With
    format="mlflow", an MLflow pyfunc model folder instead, holding the bundle (see
    foveal/exporting/mlflow_model.py for its input and output columns).

    Args:
        out: the bundle folder [default: beside MODEL, named MODEL's name + "-bundle"; "-mlflow" for
            format="mlflow"].
        maps: extra map outputs of the ONNX graph beside the pooling weights: ("rollout",).
        data: the images the ONNX checks run on (as for `foveal evaluate`) [default: the run's
            held-out images].
        parity_images: at most this many of them, evenly spaced.
        max_accuracy_drop: INT8: the most top-1 points it may lose against fp32 ONNX.
        force: INT8: keep it even when it loses more.
        license: the model card's license identifier, e.g. apache-2.0 ("other" when unsaid).
        name: the model's name on its card [default: the bundle folder's name].
    """
    if format not in ("bundle", "onnx", "int8", "mlflow"):
        raise ConfigError(f"--format must be bundle, onnx, int8 or mlflow, got {format!r}.")
    if parity_images < 1:
        raise ConfigError(f"--parity-images must be >= 1, got {parity_images}.")
    if maps and format in ("bundle", "mlflow"):
        raise ConfigError("--maps adds outputs to the ONNX graph; use it with --format onnx or int8.")
    if format == "mlflow":
        require_mlflow()  # before anything is written
    suffix = "-mlflow" if format == "mlflow" else "-bundle"
    model, out = Path(model), Path(out) if out is not None else default_bundle_folder(model, suffix)
    if format == "bundle":
        return write_bundle(model, out, license=license, name=name)
    if format == "mlflow":
        return write_mlflow_model(model, out, license=license, name=name)
    classifier = load(model, "cpu")
    check_maps(classifier, maps)  # before writing anything
    held_out, description = _parity_images(classifier, model, data)
    bundle = write_bundle(model, out, license=license, name=name)
    held_out = held_out.evenly_spaced(parity_images)
    onnx = export_onnx(
        classifier,
        bundle,
        held_out,
        f"{description} ({len(held_out)} evenly spaced)",
        maps=maps,
        int8=format == "int8",
        max_accuracy_drop=max_accuracy_drop,
        force=force,
    )
    add_to_bundle_config(bundle, "onnx", onnx)
    return bundle


def default_bundle_folder(model: str | Path, suffix: str = "-bundle") -> Path:
    """Where a bundle of `model` goes without --out: beside it, named its name + `suffix`
    (runs/train-bundle); a hub id's in the working folder (deit_tiny_patch16_224.fb_in1k-bundle)."""
    if str(model).startswith("hf-hub:"):
        return Path(str(model).rpartition("/")[2] + suffix)
    return Path(model).with_name(Path(model).stem + suffix)


def _parity_images(classifier: Classifier, model: Path, data: str | None) -> tuple[ImageSet, str]:
    """The images an ONNX export is checked on: `data`, or the run's held-out images."""
    if data is not None:
        return load_evaluation_data(data, classifier.classes, classifier.preprocessing)
    if model.is_dir() and (model / "config.json").is_file() and not (model / "model.safetensors").is_file():
        splits = RunRecord.read(model, "exported").load_data("the ONNX parity check")
        return splits.val, splits.description
    raise ConfigError(
        "the ONNX export checks the exported model against Foveal on real images: give --data "
        "(a folder of class folders, a data set root or a built-in name), or export a run folder."
    )


report = write_report

__all__ = ["Classifier", "evaluate", "explain", "export", "load", "report", "train"]
