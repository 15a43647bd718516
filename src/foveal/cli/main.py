"""`foveal` commands. Each parses its options, calls one library function and prints the result.

A FovealError (bad data, unknown model, corrupt file...) becomes one line on stderr and exit code 1;
usage mistakes exit with 2 (Typer/Click's convention). No traceback reaches the user.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from foveal.cli.output import print_predictions, print_table
from foveal.errors import FovealError
from foveal.training.config import TrainConfig, parse_duration

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Foveal: train, evaluate and use attention-based image classifiers.",
)


D = TrainConfig()  # the CLI's defaults are the library's: one source of truth


@app.command()
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Built-in name (digits, cifar10), a root with train/ and val/ "
            "(or test/), or a folder of class folders (auto-split). Omit with --resume."
        ),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue this run folder from its newest checkpoint, exactly.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model preset; see `foveal models` [default: foveal-small; with --time, "
            "the recipe's choice for the budget]."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = D.epochs,
    time: Annotated[
        str | None,
        typer.Option("--time", help="Train for a wall-clock budget instead of --epochs: 90s, 10m, 1.5h."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per training step [default: 64; with --time, the recipe's].")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate [default: 1e-3; with --time, the recipe's].")
    ] = None,
    img_size: Annotated[int | None, typer.Option(help="Input side in pixels [default: the data's].")] = None,
    optimizer: Annotated[str, typer.Option(help="adamw or adam.")] = D.optimizer,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = D.weight_decay,
    label_smoothing: Annotated[
        float, typer.Option(help="Cross-entropy label smoothing.")
    ] = D.label_smoothing,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warmup before cosine decay [default: 3; with --time, 0.3].")
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Validate and save an EMA of the weights with this decay, e.g. 0.999 (0: off) "
            "[default: off]."
        ),
    ] = None,
    auto_augment: Annotated[
        str, typer.Option(help="none, trivial (TrivialAugment) or rand (RandAugment).")
    ] = D.auto_augment,
    random_erase: Annotated[
        float, typer.Option(help="Probability of erasing a random rectangle of each image.")
    ] = D.random_erase,
    mixup_alpha: Annotated[float, typer.Option(help="MixUp Beta(alpha, alpha) (0: off).")] = D.mixup_alpha,
    cutmix_alpha: Annotated[float, typer.Option(help="CutMix Beta(alpha, alpha) (0: off).")] = D.cutmix_alpha,
    tta_flip: Annotated[
        bool, typer.Option("--tta-flip", help="Validate and predict on each image and its mirror, averaged.")
    ] = D.tta_flip,
    val_fraction: Annotated[
        float, typer.Option(help="Share of each class held out when auto-splitting.")
    ] = D.val_fraction,
    split_manifest: Annotated[str | None, typer.Option(help="Reuse an earlier run's split.json.")] = None,
    hflip: Annotated[
        bool | None,
        typer.Option("--hflip/--no-hflip", help="Random horizontal flips [default: on, off for digits]."),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop after this many epochs without a better val top-1.")
    ] = None,
    checkpoint_every_steps: Annotated[
        int | None, typer.Option(help="Also save the full training state every N steps.")
    ] = None,
    checkpoint_every_minutes: Annotated[
        float | None, typer.Option(help="Save the full training state at least this often.")
    ] = D.checkpoint_every_minutes,
    keep_checkpoints: Annotated[
        int, typer.Option(help="Newest training-state checkpoints kept.")
    ] = D.keep_checkpoints,
    max_bad_steps: Annotated[
        int, typer.Option(help="Stop after this many non-finite steps in a row.")
    ] = D.max_bad_steps,
    max_image_pixels: Annotated[
        int, typer.Option(help="Refuse larger images as decompression bombs.")
    ] = D.max_image_pixels,
    eval_batch_size: Annotated[
        int, typer.Option(help="Images per batch when validating (lower it for large images).")
    ] = D.eval_batch_size,
    data_storage: Annotated[
        str,
        typer.Option(
            help="auto, memory or disk: decoded images in memory, or memory-mapped from the decode "
            "cache for data larger than memory (auto: disk when over half the available memory)."
        ),
    ] = D.data_storage,
    workers: Annotated[
        int, typer.Option(help="Processes preparing batches ahead (0: in-process).")
    ] = D.workers,
    out: Annotated[str, typer.Option(help="Folder for run folders (runs/train, runs/train2, ...).")] = D.out,
    name: Annotated[str, typer.Option(help="Run folder name.")] = D.name,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same result on CPU.")] = D.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = D.device,
    threads: Annotated[int | None, typer.Option(help="CPU threads [default: all cores].")] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write report.html into the run folder at the end.")
    ] = D.report,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")] = False,
) -> None:
    """Train a classifier on DATA and save it in a new run folder (or --resume one)."""
    options = dict(locals())  # first: every parameter above is a TrainConfig field, but three
    for key in ("resume", "quiet", "time"):
        options.pop(key)
    options["time_budget"] = parse_duration(time) if time else None
    from foveal.runtime import process_start
    from foveal.training import train as run_training
    from foveal.training.config import make_train_config

    if resume is not None:
        if data is not None:
            raise FovealError("give either DATA (a new run) or --resume RUN_FOLDER, not both.")
        result = run_training(resume=resume, quiet=quiet, started=process_start())
    elif data is None:
        raise FovealError(
            "missing DATA: a built-in name (digits, cifar10) or a folder of class folders; "
            "or --resume RUN_FOLDER to continue a run."
        )
    else:
        result = run_training(make_train_config(**options), quiet=quiet, started=process_start())
    print(
        f"best val top-1 {result.best_top1:.2%} (epoch {result.best_epoch}), "
        f"top-5 {result.metrics.top5:.2%}, "
        f"macro F1 {result.metrics.macro_f1:.3f}; {result.epochs} epochs in {result.seconds:.0f} s; "
        f"run folder {result.run_dir}"
    )


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="A run folder or a saved .safetensors model.")],
    data: Annotated[
        str,
        typer.Argument(
            help="A folder of class folders (all of it), a data set root "
            "(its val/ or test/), or a built-in name (its held-out split)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    tta_flip: Annotated[
        bool | None,
        typer.Option(
            "--tta-flip/--no-tta-flip",
            help="Average each image with its mirror image [default: as the model was trained].",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Folder for metrics.json and confusion_matrix.png [default: runs/evaluate, numbered]."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Measure a model on labelled images: top-1/top-5, per-class precision/recall/F1, confusion matrix."""
    from foveal.evaluation.run import evaluate_model, save_evaluation
    from foveal.training.run_dir import next_run_dir

    result = evaluate_model(model, data, device=device, batch_size=batch_size, flip=tta_flip)
    folder = Path(out) if out else next_run_dir("runs", "evaluate")  # only once there is something to save
    save_evaluation(result, folder)
    if as_json:
        print(
            json.dumps(
                {"model": str(result.model), "data": result.data, **result.metrics.to_dict()}, indent=2
            )
        )
        return
    print(f"{result.data}\n{result.metrics.summary_table()}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable files (see {folder}/metrics.json)")
    print(f"saved {folder}/metrics.json and {folder}/confusion_matrix.png")


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="A run folder or a saved .safetensors model.")],
    images: Annotated[list[str], typer.Argument(help="Image files and/or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels per image.")] = 5,
    format: Annotated[str, typer.Option(help="table, json or csv.")] = "table",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Predict the top-k labels, with probabilities, of each image."""
    from foveal.classifier import collect_images, load, predict_files

    if format not in ("table", "json", "csv"):
        raise FovealError(f"--format must be table, json or csv, got {format!r}")
    if top_k < 1:
        raise FovealError(f"--top-k must be >= 1, got {top_k}")
    classifier = load(model, device)
    predictions, failed = predict_files(classifier, collect_images(images), top_k, batch_size)
    for path, reason in failed:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print_predictions(predictions, failed, format)


@app.command()
def explain(
    model: Annotated[str, typer.Argument(help="A run folder or a saved .safetensors model.")],
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files and/or folders (searched recursively); with --faithfulness, a data set "
            "(a folder of class folders, a root with val/ or test/, or a built-in name)."
        ),
    ],
    method: Annotated[
        str | None,
        typer.Option(help="pool, rollout, grad-rollout or gradcam [default: rollout; gradcam for a CNN]."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--class", help="Class to explain, by name or index [default: the predicted one]."),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Folder for the PNGs and JSON [default: runs/explain, numbered].")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels shown per image.")] = 5,
    head_fusion: Annotated[str, typer.Option(help="Rollout: fuse heads by mean, max or min.")] = "mean",
    discard_ratio: Annotated[
        float, typer.Option(help="Rollout: drop this share of each token's weakest links, 0 to 0.99.")
    ] = 0.0,
    faithfulness: Annotated[
        bool,
        typer.Option(
            "--faithfulness",
            help="Measure deletion/insertion curves of every method against random maps on the data set.",
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option("--images", help="With --faithfulness: evenly spaced images to measure on.")
    ] = 500,
    deletion_fill: Annotated[
        str, typer.Option(help="With --faithfulness: deleted pixels take the mean colour or a blur.")
    ] = "mean",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Show where the model looks: a heatmap per image (PNG + JSON), a contact sheet for several."""
    from foveal.classifier import collect_images, load
    from foveal.explanation.run import explain_files, save_explanations
    from foveal.training.run_dir import next_run_dir

    if top_k < 1:
        raise FovealError(f"--top-k must be >= 1, got {top_k}")
    classifier = load(model, device)
    if faithfulness:
        _print_faithfulness(classifier, images, method, limit, deletion_fill, out)
        return
    explanations, failed = explain_files(
        classifier,
        collect_images(images),
        method=method,
        target=target,
        top_k=top_k,
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
    )
    for path, reason in failed:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    folder = Path(out) if out else next_run_dir("runs", "explain")
    save_explanations(explanations, folder)
    rows = [[e.source, e.labels[0], f"{e.probabilities[0]:.1%}", e.target] for e in explanations]
    print_table(["image", "predicted", "probability", f"{explanations[0].method} map of"], rows)
    sheet = " and contact_sheet.png" if len(explanations) > 1 else ""
    print(f"saved a PNG and a JSON per image{sheet} in {folder}")


def _print_faithfulness(
    classifier, sources: list[str], method: str | None, limit: int, deletion_fill: str, out: str | None
) -> None:

    from foveal.data.sources import load_evaluation_data
    from foveal.explanation.faithfulness import DELETION_FILLS, faithfulness_table
    from foveal.explanation.run import measure_faithfulness
    from foveal.io import atomic_write_json
    from foveal.training.run_dir import next_run_dir

    if len(sources) != 1:
        raise FovealError(f"--faithfulness takes one data set, got {len(sources)} paths.")
    if limit < 2:
        raise FovealError(f"--images must be >= 2, got {limit}")
    if deletion_fill not in DELETION_FILLS:
        raise FovealError(
            f"--deletion-fill must be one of {', '.join(DELETION_FILLS)}, got {deletion_fill!r}"
        )
    data, description = load_evaluation_data(
        sources[0], classifier.classes, classifier.info.preprocessing.img_size
    )
    data = data.evenly_spaced(limit)
    methods = None if method is None else [method]
    scores = measure_faithfulness(classifier, data.images, methods, deletion_fill=deletion_fill)
    print(
        f"{description}; measured on {len(data)} images, each explaining its predicted class; "
        f"deleted pixels take the {'mean colour' if deletion_fill == 'mean' else 'blurred image'}"
    )
    print(faithfulness_table(scores))
    folder = Path(out) if out else next_run_dir("runs", "explain")
    atomic_write_json(
        folder / "faithfulness.json",
        {
            "data": description,
            "images": len(data),
            "deletion_fill": deletion_fill,
            "scores": [s.to_dict() for s in scores],
        },
    )
    print(f"saved {folder}/faithfulness.json")


@app.command()
def report(
    run_folder: Annotated[str, typer.Argument(help="A run folder that `foveal train` created.")],
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """(Re)write RUN_FOLDER/report.html: data, curves, per-class scores, calibration, worst mistakes."""
    from foveal.reporting import write_report

    print(f"saved {write_report(run_folder, device=device)}")


@app.command()
def compare(
    data: Annotated[str, typer.Argument(help="A built-in name or a folder of class folders, as for train.")],
    models: Annotated[
        str, typer.Option(help="Comma-separated models from `foveal models`.")
    ] = "foveal-nano,cnn-resnet20",
    budget: Annotated[float, typer.Option(help="Training minutes per model.")] = 10.0,
    epochs: Annotated[
        int | None, typer.Option(help="Train each model this many epochs instead of --budget.")
    ] = None,
    out: Annotated[str, typer.Option(help="Folder for the comparison folder.")] = "runs",
    name: Annotated[str, typer.Option(help="Comparison folder name.")] = "compare",
    seed: Annotated[int, typer.Option(help="Random seed, the same for every model.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the table.")] = False,
) -> None:
    """Train each model on the same split, augmentation and budget; compare accuracy, size and speed."""
    from foveal.compare import compare as run_comparison
    from foveal.compare import markdown_table, parse_models

    result = run_comparison(
        data,
        parse_models(models),
        budget,
        out=out,
        name=name,
        seed=seed,
        device=device,
        epochs=epochs,
        quiet=quiet,
    )
    print(markdown_table(result))
    print(f"saved {result['folder']}/comparison.json, comparison.md and a report.html per model")


@app.command()
def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'cct-*'.")] = "*",
) -> None:
    """List the model presets with their sizes."""
    from foveal.models import create_model, list_models

    rows = []
    for name in list_models(pattern):
        net = create_model(name, num_classes=10)
        cfg = net.config
        params = sum(p.numel() for p in net.parameters())
        rows.append([name, cfg.family, f"{params / 1e6:.2f}M", str(cfg.img_size)])
    print_table(["model", "family", "params (10 classes)", "img size"], rows)


def run() -> None:
    """Console-script entry point: run the app, turning Foveal errors into one clear line."""
    try:
        app()
    except FovealError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:  # disk full, permission denied...: the machine's problem, said plainly
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
