"""The end of a run: the curves plotted, the kept model evaluated on every held-out image, its
open-set threshold calibrated and saved with it, metrics.json written, and the TrainResult."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from foveal.config import TrainConfig
from foveal.data.sources import DataSplits
from foveal.errors import FovealError
from foveal.evaluation.metrics import ClassificationMetrics, shows_top_k, top_k_for
from foveal.evaluation.plots import plot_training_curves
from foveal.evaluation.workflow import Evaluation, evaluate, save_evaluation
from foveal.explanation.report_plan import ReportPlan
from foveal.predictor.inference import predict_outputs
from foveal.predictor.rejection import FIT_IMAGES, RejectionCount, calibrate
from foveal.predictor.saved import ModelInfo, load_model, save_model
from foveal.tracking import RunEnd, Trackers, final_figures
from foveal.tracking.pictures import end_pictures
from foveal.training import distributed
from foveal.training.progress import say
from foveal.training.setup import RunSetup
from foveal.training.state import Progress


@dataclass
class TrainResult:
    """What a finished run reports. Accuracies are fractions in [0, 1]."""

    run_dir: Path
    best_top1: float
    best_epoch: int
    final_top1: float  # val top-1 after the last epoch
    epochs: int
    seconds: float  # wall clock from the call to the saved, evaluated model
    data_seconds: float  # of which: finding and decoding the images
    train_images_per_second: float  # training steps only (augmentation included, validation not)
    passes: float  # training images seen over the training set's size (epochs, the last partial counted so)
    evaluation: Evaluation  # the saved (best) model on every validation / held-out image, with its logits
    config: TrainConfig  # the resolved settings the run used
    data: DataSplits | None = field(repr=False)  # the run's images, for a report that follows without
    # reloading them; `foveal.train` lets go of them (None) once the report is written
    report_plan: ReportPlan  # what the report that follows explains: under a time budget, what fits

    @property
    def metrics(self) -> ClassificationMetrics:
        return self.evaluation.metrics

    @property
    def kept_model(self) -> str:
        """What the saved model is, with its figure on every held-out image: under a time budget the
        final, annealed epoch's (the schedule ends there; the epochs' validations were on a sample),
        else the epoch with the best validation."""
        top1 = f"val top-1 {self.best_top1:.2%}"
        images = f"on {self.metrics.num_samples:,} held-out images"
        if self.config.optim.time_budget:
            return f"final model (epoch {self.best_epoch}, annealed): {top1} {images}"
        return f"best {top1} (epoch {self.best_epoch}) {images}"


def finish(run: RunSetup, progress: Progress) -> Evaluation:
    """Rank 0 plots the curves and evaluates the kept model once; every rank gets its figures."""
    evaluation = None
    if distributed.is_main():  # the one writer; the others wait for its figures
        top_k, classes = top_k_for(len(run.data.classes)), len(run.data.classes)
        plot_training_curves(
            run.run_dir / "results.csv",
            run.run_dir / "results.png",
            top_k=top_k if shows_top_k(top_k, classes) else None,
        )
        evaluation = final_evaluation(run, progress.best_epoch, last_epoch=progress.rows[-1]["epoch"])
    return distributed.from_main(evaluation)  # once a run: logits of every held-out image


def train_result(
    run: RunSetup,
    progress: Progress,
    evaluation: Evaluation,
    seconds: float,
    report_plan: ReportPlan,
    quiet: bool,
) -> TrainResult:
    """The finished run's TrainResult, `seconds` after its start, with its `report_plan`, and the line
    that says it."""
    train_seconds = sum(r["seconds"] for r in progress.rows)
    result = TrainResult(
        run_dir=run.run_dir,
        best_top1=evaluation.metrics.top1,  # the kept model on every held-out image, in all its views
        best_epoch=progress.best_epoch,
        final_top1=progress.rows[-1]["val_top1"],
        epochs=len(progress.rows),
        seconds=seconds,
        data_seconds=run.data_seconds,
        train_images_per_second=progress.seen / max(train_seconds, 1e-9),
        passes=progress.seen / len(run.data.train),
        evaluation=evaluation,
        config=run.config,
        data=run.data,
        report_plan=report_plan,
    )
    say(
        f"done in {seconds:.0f} s (data {run.data_seconds:.0f} s, training steps {train_seconds:.0f} s; "
        f"the rest start-up, validation and the final evaluation): {result.kept_model}, "
        f"{result.train_images_per_second:.0f} train images/s. Saved {run.run_dir}/weights/best.safetensors",
        quiet,
    )
    return result


def track_end(run: RunSetup, trackers: Trackers, evaluation: Evaluation, step: int) -> None:
    """Tell the loggers the kept model's scores, at the run's last optimizer `step`, with the
    confusion matrix and a sheet of attention overlays when one of them records pictures (the model
    is saved by now: a failure to draw them costs a warning, not the run)."""
    figures = final_figures(evaluation.metrics, evaluation.loss)
    with tempfile.TemporaryDirectory() as folder:
        pictures = {}
        if trackers.wants_pictures:
            try:
                model_file = run.run_dir / "weights" / "best.safetensors"
                pictures = end_pictures(run.run_dir, model_file, run.data.val, str(run.device), Path(folder))
            except Exception as error:  # noqa: BLE001  (the run is done: only its pictures are lost)
                say(f"warning: the attention overlays for the loggers were not drawn ({error})")
        trackers.finish(RunEnd(step, figures, pictures))


def final_evaluation(run: RunSetup, best_epoch: int, *, last_epoch: int) -> Evaluation:
    """Evaluate the best weights on every validation image, calibrate the model's open-set threshold
    (calibrate_rejection) and write metrics.json and the confusion matrix (metrics.json last: its
    presence marks the run as finished)."""
    best = run.run_dir / "weights" / "best.safetensors"
    if not best.is_file():
        raise FovealError(
            f"no epoch of {run.run_dir} gave a finite validation accuracy, so there is no best "
            "model; lower --lr and check the images."
        )
    model, info = load_model(best, run.device)
    evaluation = evaluate(
        model,
        run.data.val,
        info.preprocessing,
        device=run.device,
        batch_size=run.config.run.eval_batch_size,
        data=run.data.description,
        model_file=best,
        epoch=best_epoch,
    )
    calibrate_rejection(run, model, info, evaluation, best, also_last=last_epoch == best_epoch)
    save_evaluation(evaluation, run.run_dir)
    return evaluation


def calibrate_rejection(
    run: RunSetup, model: nn.Module, info: ModelInfo, evaluation: Evaluation, best: Path, *, also_last: bool
) -> None:
    """Calibrate the open-set threshold on `evaluation`'s outputs (its class means and covariance on
    up to FIT_IMAGES training images) and save it with the weights in `best`, and in last.safetensors
    too when `also_last` (the same weights, as under a time budget); count what it rejects."""
    fit = run.data.train.evenly_spaced(FIT_IMAGES)  # the pooled features come from one view
    fit_outputs = predict_outputs(
        model,
        fit.images,
        info.preprocessing.with_views("none"),
        device=run.device,
        batch_size=run.config.run.eval_batch_size,
    )
    rejection = calibrate(evaluation.outputs, (fit_outputs, fit.labels))
    if rejection is None:
        return
    info.extra["rejection"] = rejection.to_dict()
    save_model(best, model, info)
    if also_last:  # the same weights: the threshold holds for them too
        save_model(best.with_name("last.safetensors"), model, info)
    evaluation.rejection = RejectionCount.of(rejection, evaluation.outputs)
