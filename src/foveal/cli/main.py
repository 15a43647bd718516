"""`foveal` commands. Each parses its options, calls one library function and prints the result.

A FovealError (bad data, unknown model, corrupt file...) becomes one line on stderr and exit code 1;
usage mistakes exit with 2 (Typer/Click's convention). No traceback reaches the user.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

from foveal.cli.help import ShortHelp
from foveal.cli.options import given, with_options, with_training_options
from foveal.cli.output import print_predictions, print_table
from foveal.config import settings_fields
from foveal.errors import FovealError, TrainingInterrupted
from foveal.evaluation.settings import EvaluateSettings
from foveal.explanation.settings import ExplainSettings
from foveal.exporting.settings import BenchSettings, ExportSettings
from foveal.messages import counted
from foveal.predictor.settings import LoadSettings, PredictSettings
from foveal.serving.settings import ServeSettings

DEFAULT_COMPARE_SECONDS = 600.0  # `foveal compare` without --time or --epochs: 10 minutes a model
# A help text's first paragraph is its line in --help; the whole text is in docs/options.md.
PUBLIC_CHECKPOINTS = (
    "A public checkpoint is a timm ViT or DeiT: hf-hub:timm/NAME (read from the Hugging Face cache, "
    "downloaded into it when online), a folder holding timm's config.json and model.safetensors, or a "
    ".safetensors, .bin or .pth state dict; it predicts with its own classes and preprocessing."
)
MODEL_HELP = (
    f"A run folder, .safetensors file, bundle or model.onnx; or a public ViT (hf-hub:timm/NAME).\n\n"
    f"{PUBLIC_CHECKPOINTS}"
)

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Foveal: train, evaluate and use attention-based image classifiers.",
)


def _print_version(asked: bool) -> None:
    if asked:
        # From the installed packages' metadata: saying a version must not wait for torch to import.
        found = {name: metadata.version(name) for name in ("foveal", "torch")}
        print(f"foveal {found['foveal']} (torch {found['torch']}, Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Say the version and stop."),
    ] = False,
) -> None:
    """Foveal: train, evaluate and use attention-based image classifiers."""


@app.command(cls=ShortHelp)
@with_training_options(exclude=("data",))
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            help="A built-in name, data set root, class folders or a table of labels.", show_default=False
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue a run folder from its newest checkpoint.", rich_help_panel="Run"),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(help="Start from a JSON or YAML settings file.", rich_help_panel="Run"),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final summary.", rich_help_panel="Run")
    ] = False,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Train on N processes (torchrun), one per GPU.", rich_help_panel="Run", show_default=False
        ),
    ] = None,
    **options: Any,
) -> None:
    """Train a classifier on DATA in a new run folder (or --resume one).

    DATA is a built-in name (digits, cifar10), a root with train/ and val/ (or test/), a folder of
    class folders (auto-split), or a table of labels (data.csv, data.jsonl or a folder holding
    metadata.csv: file_name,label, an optional split column); omit it with --resume, or to take it
    from --config. A --config file (a run folder's config.json works as it is) is overridden by the
    options given; --resume continues a run exactly, from its newest checkpoint. --devices N starts
    torchrun for you, one process per GPU (or sharing the CPU cores); --batch-size stays the global
    batch (docs/distributed.md)."""
    from foveal import api
    from foveal.config import TrainConfig, load_config_file
    from foveal.runtime import process_start
    from foveal.training.distributed import world_from_env

    chosen = given(options)
    if devices is not None and devices > 1 and world_from_env().size == 1:  # not yet one of the ranks
        from foveal.cli.launch import launch, train_arguments

        launch(devices, train_arguments(data, resume, config, quiet, chosen))
        return
    if resume is not None:
        if data is not None or config is not None or chosen:
            raise FovealError(
                "a resumed run keeps the settings it started with; give only --resume RUN_FOLDER."
            )
        result = api.train(resume=resume, quiet=quiet, started=process_start())
    else:
        if data is None and config is None:
            raise FovealError(
                "missing DATA: a built-in name (digits, cifar10), a folder of class folders or a "
                "table of labels (data.csv); or --resume RUN_FOLDER to continue a run."
            )
        base = load_config_file(config) if config is not None else TrainConfig()
        settings = base.replace(**chosen, **({} if data is None else {"data": data}))
        result = api.train(settings, quiet=quiet, started=process_start())
    if not world_from_env().is_main:  # under torchrun, rank 0 reports for all
        return
    metrics = result.metrics
    print(
        f"{result.kept_model}, "
        + (f"top-{metrics.top_k} {metrics.top5:.2%}, " if metrics.shows_top_k else "")
        + f"macro F1 {metrics.macro_f1:.3f}; {counted(result.epochs, 'epoch')} in {result.seconds:.0f} s; "
        f"run folder {result.run_dir}"
    )


@app.command(cls=ShortHelp)
@with_options(settings_fields(EvaluateSettings))
def evaluate(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    data: Annotated[
        str,
        typer.Argument(
            help="Labelled images: class folders, a data set root, a table or a built-in name.\n\n"
            "All of a folder of class folders; a data set root's val/ or test/; a table's test rows "
            "(else its val rows; every row without a split column); a built-in's held-out split."
        ),
    ],
    **options: Any,
) -> None:
    """Measure a model on labelled images: accuracy, F1, confusions.

    Top-1 and top-k accuracy, per-class precision, recall and F1, a confusion matrix."""
    from foveal.api import evaluate as evaluate_model
    from foveal.evaluation.workflow import save_evaluation
    from foveal.runs import next_run_dir

    settings = EvaluateSettings(**given(options))
    result = evaluate_model(
        model,
        data,
        device=settings.device,
        batch_size=settings.batch_size,
        flip=settings.tta_flip,
        reject=settings.reject,
    )
    # The folder is numbered only once there is something to save.
    folder = Path(settings.out) if settings.out else next_run_dir("runs", "evaluate")
    files = save_evaluation(result, folder)
    if settings.as_json:  # with where the files went: a program reading this cannot see the "saved" line
        written = {kind: str(path.resolve()) for kind, path in files.items()}
        print(json.dumps({**result.to_dict(), "files": written}, indent=2))
        return
    print(f"{result.data}\n{result.metrics.summary_table()}")
    if result.rejection is not None:
        print(result.rejection.sentence())
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable files (see {folder}/metrics.json)")
    print(f"saved {folder}/metrics.json and {folder}/confusion_matrix.png")


@app.command(cls=ShortHelp)
@with_options(settings_fields(PredictSettings))
def predict(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    images: Annotated[list[str], typer.Argument(help="Image files and/or folders (searched recursively).")],
    **options: Any,
) -> None:
    """Predict the top-k labels, with probabilities, of each image.

    An image unlike every class the model knows is "unknown" (--no-reject: always a class)."""
    from foveal.data.files import collect_images
    from foveal.predictor.classifier import load, predict_files

    settings = PredictSettings(**given(options))
    classifier = load(model, settings.device)
    predictions, failed = predict_files(
        classifier, collect_images(images), settings.top_k, settings.batch_size, reject=settings.reject
    )
    for path, reason in failed:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print_predictions(predictions, failed, settings.format, classifier.rejection if settings.reject else None)


@app.command(cls=ShortHelp)
@with_options(settings_fields(ExplainSettings))
def explain(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files and/or folders (searched recursively).\n\nWith --faithfulness, a data "
            "set (a folder of class folders, a root with val/ or test/, a table of labels or a built-in "
            "name)."
        ),
    ],
    **options: Any,
) -> None:
    """Show where the model looks: a heatmap per image (PNG + JSON).

    A contact sheet for several; with --faithfulness, how faithful each method's maps are."""
    from foveal.explanation.workflow import explain_inputs, save_explanations
    from foveal.predictor.classifier import load
    from foveal.runs import next_run_dir

    settings = ExplainSettings(**given(options))
    classifier = load(model, settings.device)
    if settings.faithfulness:
        _print_faithfulness(classifier, images, settings)
        return
    explanations, failed = explain_inputs(
        classifier,
        images,
        method=settings.method,
        target=settings.target,
        top_k=settings.top_k,
        head_fusion=settings.head_fusion,
        discard_ratio=settings.discard_ratio,
        quiet=False,
    )
    for path, reason in failed:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    folder = Path(settings.out) if settings.out else next_run_dir("runs", "explain")
    save_explanations(explanations, folder)
    rows = [[e.source, e.labels[0], f"{e.probabilities[0]:.1%}", e.target] for e in explanations]
    print_table(["image", "predicted", "probability", f"{explanations[0].method} map of"], rows)
    sheet = " and contact_sheet.png" if len(explanations) > 1 else ""
    print(f"saved a PNG and a JSON per image{sheet} in {folder}")


def _print_faithfulness(classifier, sources: list[str], settings: ExplainSettings) -> None:
    from foveal.data.sources import load_evaluation_data
    from foveal.explanation.faithfulness import faithfulness_table
    from foveal.explanation.workflow import measure_faithfulness
    from foveal.io import atomic_write_json
    from foveal.runs import next_run_dir

    if len(sources) != 1:
        raise FovealError(f"--faithfulness takes one data set, got {len(sources)} paths.")
    deletion_fill = settings.deletion_fill
    data, description = load_evaluation_data(sources[0], classifier.classes, classifier.info.preprocessing)
    data = data.evenly_spaced(settings.limit)
    methods = None if settings.method is None else [settings.method]
    scores = measure_faithfulness(classifier, data.images, methods, deletion_fill=deletion_fill, quiet=False)
    print(
        f"{description}; measured on {len(data)} images, each explaining its predicted class; "
        f"deleted pixels take the {'mean colour' if deletion_fill == 'mean' else 'blurred image'}"
    )
    print(faithfulness_table(scores))
    folder = Path(settings.out) if settings.out else next_run_dir("runs", "explain")
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


@app.command(cls=ShortHelp)
@with_options(settings_fields(LoadSettings))
def report(
    run_folder: Annotated[str, typer.Argument(help="A run folder that `foveal train` created.")],
    **options: Any,
) -> None:
    """(Re)write RUN_FOLDER/report.html: data, curves, scores, mistakes.

    The data, the training curves, per-class scores, calibration and the worst mistakes."""
    from foveal.reporting import write_report

    print(f"saved {write_report(run_folder, device=LoadSettings(**given(options)).device)}")


@app.command(cls=ShortHelp)
@with_training_options(exclude=("data", "model", "name"))
def compare(
    data: Annotated[
        str,
        typer.Argument(
            help="A built-in name, class folders or a table of labels, as for train.", show_default=False
        ),
    ],
    models: Annotated[
        str,
        typer.Option(help="Comma-separated models from `foveal models`.", rich_help_panel="Model"),
    ] = "foveal-nano,cnn-resnet20",
    name: Annotated[str, typer.Option(help="Comparison folder name.", rich_help_panel="Run")] = "compare",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the table.", rich_help_panel="Run")
    ] = False,
    **options: Any,
) -> None:
    """Train each model alike; compare accuracy, size and speed.

    Same split, augmentation, budget or epochs and seed for each. The options are train's; without
    --time or --epochs each model trains for 10 minutes."""
    from foveal.compare import compare as run_comparison
    from foveal.compare import markdown_table, parse_models
    from foveal.config import TrainConfig

    chosen = given(options)
    if "time_budget" not in chosen and "epochs" not in chosen:
        chosen["time_budget"] = DEFAULT_COMPARE_SECONDS
    chosen_models = parse_models(models)
    result = run_comparison(TrainConfig().replace(data=data, name=name, **chosen), chosen_models, quiet=quiet)
    print(markdown_table(result))
    print(f"saved {result['folder']}/comparison.json, comparison.md and a report.html per model")


@app.command(cls=ShortHelp)
@with_options(settings_fields(ExportSettings))
def export(
    model: Annotated[
        str,
        typer.Argument(
            help="A run folder, .safetensors file or bundle; or a public ViT (hf-hub:timm/NAME).\n\n"
            + PUBLIC_CHECKPOINTS
        ),
    ],
    **options: Any,
) -> None:
    """Package a model as a bundle (and ONNX, INT8) with a model card.

    A bundle is config.json (classes, preprocessing), the weights and a model card; optionally
    ONNX (checked against Foveal on real images) and INT8 (with its accuracy cost), or an MLflow
    model holding the bundle."""
    from foveal.api import export as export_model

    settings = ExportSettings(**given(options))
    folder = export_model(model, **asdict(settings))
    format = settings.format
    if format == "mlflow":
        print(
            f"saved the MLflow model {folder} (the bundle in artifacts/foveal_model); serve it with: "
            f"mlflow models serve -m {folder} --env-manager local"
        )
        return
    print(f"saved {folder}/config.json, model.safetensors and README.md (the model card)")
    if format in ("onnx", "int8"):
        parity = json.loads((folder / "parity.json").read_text())
        from foveal.exporting.parity import DIFFERENCES

        gaps = [
            f"max |{words} difference| {parity[key]:.1e}"
            for key, words in DIFFERENCES
            if parity.get(key) is not None
        ]
        print(
            f"saved {folder}/model.onnx; parity with Foveal on {parity['images']} images at batch sizes "
            f"{parity['batch_sizes']}: {', '.join(gaps)}, top-1 agreement {parity['top1_agreement']:.2%} "
            "(parity.json)"
        )
    if format == "int8":
        from foveal.exporting.quantize import Int8Check

        check = Int8Check(**json.loads((folder / "int8.json").read_text()))
        print(f"saved {folder}/model.int8.onnx: {check.summary} on this CPU (int8.json)")


@app.command(cls=ShortHelp)
@with_options(settings_fields(BenchSettings))
def bench(
    model: Annotated[str, typer.Argument(help="A run folder, .safetensors file or bundle.")],
    out: Annotated[
        str | None,
        typer.Option(
            help="The JSON record [default: MODEL's folder's bench.json, or NAME.bench.json].",
            show_default=False,
        ),
    ] = None,
    images: Annotated[
        str | None,
        typer.Option(help="Images timed end to end [default: the run's held-out ones].", show_default=False),
    ] = None,
    **options: Any,
) -> None:
    """Time the model in PyTorch and ONNX Runtime, fp32 and INT8.

    Eager PyTorch, torch.compile and ONNX Runtime fp32 and INT8, interleaved: batch-1 latency
    p50/p90/p99, throughput, end-to-end time per image (decode + preprocess + infer). The record goes
    to --out; a file that is not a bench record is never overwritten. --images is a folder
    (searched recursively) or a file; without it, the run's held-out files, else 8 synthetic JPEGs."""
    import shlex

    from foveal.exporting.bench import bench_model, record_path, write_record
    from foveal.exporting.bench_summary import speedup_lines, summary_line, table

    settings = BenchSettings(**given(options))
    path = record_path(model, out)  # checked before minutes of measuring
    command = ["foveal", "bench", model, "--out", str(path), "--samples", str(settings.samples)]
    command += ["--warmup", str(settings.warmup), "--batch-size", str(settings.batch_size)]
    command += ["--batches", str(settings.batches)]
    command += ([] if images is None else ["--images", images]) + (
        [] if settings.compile else ["--no-compile"]
    )
    command += [] if settings.threads is None else ["--threads", str(settings.threads)]
    record = bench_model(model, settings, images=images, command=shlex.join(command))
    write_record(record, path)
    print(summary_line(record))
    print_table(*table(record))
    print("\n".join(speedup_lines(record)))
    print(f"saved {path}")


@app.command(cls=ShortHelp)
@with_options(settings_fields(ServeSettings))
def serve(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    **options: Any,
) -> None:
    """Serve a model over HTTP: predictions, explanations, a web page.

    POST /predict and /explain, a web page at /, the API at /docs, Prometheus metrics at /metrics."""
    try:
        from foveal.serving.server import serve as serve_model
    except ImportError as error:  # FastAPI, uvicorn...: an optional extra
        raise FovealError(f"foveal serve needs {error.name}: pip install 'foveal[serve]'") from None

    serve_model(ServeSettings(model=model, **given(options)))


@app.command(cls=ShortHelp)
def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'cct-*'.")] = "*",
) -> None:
    """List the model presets: size, purpose, the recipes' defaults.

    Each preset's size, what it is for, and which the default recipes train."""
    from fnmatch import fnmatch

    from foveal.cli.preset_facts import PRESETS, recipe_mark

    # From recorded facts, not built models: a listing should not take seconds (preset_facts.py).
    rows = [
        [name, facts.family, f"{facts.params:,}", str(facts.img_size), facts.purpose, recipe_mark(name)]
        for name, facts in sorted(PRESETS.items())
        if fnmatch(name, pattern)
    ]
    print_table(["model", "family", "params (10 classes)", "img size", "for", "default for"], rows)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app on `argv` (default: the command line), turning
    Foveal errors into one clear line. Always ends in SystemExit with the exit code."""
    try:
        app(args=argv)
    except TrainingInterrupted as interrupt:  # after its checkpoint: says how to resume
        if _is_main_rank():  # under torchrun every rank stops; rank 0 says so
            _say(str(interrupt))
        sys.exit(130)
    except FovealError as error:
        _say(f"error: {error}")
        sys.exit(1)
    except OSError as error:  # disk full, permission denied...: the machine's problem, said plainly
        where = f" ({error.filename})" if error.filename else ""
        _say(f"error: {error.strerror or error}{where}")
        sys.exit(1)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)


def _is_main_rank() -> bool:
    from foveal.training.distributed import world_from_env

    try:
        return world_from_env().is_main
    except FovealError:  # torchrun's variables malformed: that error is being said; say this one too
        return True


def _say(line: str) -> None:
    """One write of the whole line: under torchrun the ranks share stderr, and print's two writes
    (text, then newline) let another rank's line land between them. Every rank says its own error:
    rank 0 may be stopped by torchrun before it can, when another rank fails first."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
