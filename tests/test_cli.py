"""The `foveal` command end to end on tiny synthetic folders, and its answers to bad input.

Commands run in this process (`foveal_cli`, the console-script entry point called directly); a few
smoke tests run the real `python -m foveal` in a child process (`foveal_cli_subprocess`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli, foveal_cli_subprocess
from synthetic import CLASSES

import foveal


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One CLI training run on a separable 3-class folder, shared by the tests below. It runs
    `python -m foveal train` in a child process: the smoke test of training through the real command."""
    from synthetic import make_class_folder

    base = tmp_path_factory.mktemp("cli")
    data = make_class_folder(base / "shapes", per_class=16)
    done = foveal_cli_subprocess(
        "train",
        str(data),
        "--model",
        "foveal-tiny",
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--img-size",
        "16",
        "--lr",
        "3e-3",
        "--out",
        str(base / "runs"),
        "--no-report",  # report.html is tested in test_report.py; here it would only add time
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.splitlines()[-1]
    # 3 classes: top-3 would be a certain 100%, so the summary gives top-2 (issues #16, #31)
    assert summary.startswith("best val top-1") and "top-2 " in summary and "top-3" not in summary
    return base / "runs" / "train", data


def test_train_writes_a_run_folder_that_learned(trained_run: tuple[Path, Path]) -> None:
    run, _ = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["top1"] >= 0.8  # the classes are separable; chance is 1/3


def test_evaluate_prints_json_metrics(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained_run
    done = foveal_cli("evaluate", str(run), str(data), "--json", "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["num_samples"] == 48 and metrics["class_names"] == list(CLASSES)
    assert len(metrics["confusion"]) == 3 and sum(map(sum, metrics["confusion"])) == 48
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert metrics["top_k"] == 2  # below the number of classes: top-3 of 3 is always 100%
    written = {kind: Path(path) for kind, path in metrics["files"].items()}
    assert written == {
        "metrics": (tmp_path / "eval" / "metrics.json").resolve(),
        "confusion_matrix": (tmp_path / "eval" / "confusion_matrix.png").resolve(),
    }
    assert all(path.is_absolute() and path.is_file() for path in written.values())


def test_cli_and_python_predictions_agree(trained_run: tuple[Path, Path]) -> None:
    run, data = trained_run
    files = sorted((data / "square").glob("*.png"))[:3]
    done = foveal_cli("predict", str(run), *map(str, files), "--format", "json", "-k", "2")
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    from_python = foveal.load(run, device="cpu").predict(files, top_k=2)
    assert [p["labels"] for p in from_cli] == [p.labels for p in from_python]
    for cli, py in zip(from_cli, from_python):
        assert cli["probabilities"] == pytest.approx(py.probabilities, abs=1e-6)


def test_predict_walks_folders_and_reports_bad_files(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained_run
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes((data / "circle" / "000.png").read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    done = foveal_cli("predict", str(run), str(folder), "--format", "csv")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split(",")  # a table of labels: train reads it (test_table_labels)
    assert header[:3] == ["file_name", "label", "probability"] and header[-2:] == ["unknown", "familiarity"]
    assert "broken.jpg" in done.stderr and "Traceback" not in done.stderr
    table = foveal_cli("predict", str(run), str(folder / "good.png"))
    assert table.returncode == 0 and "good.png" in table.stdout


def test_models_lists_the_presets() -> None:
    done = foveal_cli("models", "cct-*")
    assert done.returncode == 0 and "cct-7-3x1" in done.stdout and "3,760,139" in done.stdout


def make_one_class(root: Path) -> Path:
    (root / "only").mkdir(parents=True)
    return root


BAD_TRAIN_INPUTS = {
    "missing folder": (lambda tmp: ["train", str(tmp / "nope")], "does not exist"),
    "empty folder": (
        lambda tmp: ["train", str((tmp / "empty").mkdir() or tmp / "empty")],
        "no class folders",
    ),
    "single class": (lambda tmp: ["train", str(make_one_class(tmp / "one"))], "at least 2 classes"),
    "unknown model": (lambda tmp: ["train", "digits", "--model", "cct-7-3x9"], "unknown model"),
    "impossible image size": (lambda tmp: ["train", "digits", "--img-size", "0"], "img_size must be"),
    "bad optimizer": (lambda tmp: ["train", "digits", "--optimizer", "sgdd"], "optimizer must be"),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_INPUTS))
def test_bad_training_input_gives_one_clear_line(tmp_path: Path, case: str) -> None:
    make_args, expected = BAD_TRAIN_INPUTS[case]
    done = foveal_cli(*make_args(tmp_path), "--out", str(tmp_path / "runs"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and expected in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "train").exists()  # nothing half-made is left behind


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"PK\x03\x04 not a model"])
def test_a_corrupt_saved_model_gives_one_clear_line(tmp_path: Path, content: bytes) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(content)
    for args in (["predict", str(model), str(model)], ["evaluate", str(model), "digits"]):
        done = foveal_cli(*args, cwd=tmp_path)
        assert done.returncode == 1 and done.stderr.startswith("error: ")
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # a failed evaluation leaves no empty output folder


def test_a_missing_model_and_a_missing_image_are_named(
    trained_run: tuple[Path, Path], tmp_path: Path
) -> None:
    done = foveal_cli("predict", str(tmp_path / "none"), str(tmp_path))
    assert done.returncode == 1 and "does not exist" in done.stderr
    run, _ = trained_run
    done = foveal_cli("predict", str(run), str(tmp_path / "ghost.png"))
    assert done.returncode == 1 and "ghost.png does not exist" in done.stderr


def test_usage_errors_exit_2_without_traceback() -> None:
    done = foveal_cli("train", "digits", "--epochz", "3")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done = foveal_cli("train")
    assert done.returncode == 1 and "missing DATA" in done.stderr


def test_the_real_command_exits_2_on_usage_and_1_with_one_line_on_a_corrupt_model(tmp_path: Path) -> None:
    """Smoke test of `python -m foveal` itself: exit codes and stderr as a shell sees them."""
    usage = foveal_cli_subprocess("train", "digits", "--epochz", "3", cwd=tmp_path)
    assert usage.returncode == 2 and "--epochz" in usage.stderr and "Traceback" not in usage.stderr
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"PK\x03\x04 not a model")
    corrupt = foveal_cli_subprocess("predict", str(model), str(model), cwd=tmp_path)
    assert corrupt.returncode == 1 and corrupt.stdout == ""
    assert corrupt.stderr.startswith("error: ") and len(corrupt.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    version = foveal_cli_subprocess("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(f"foveal {foveal.__version__} (torch ")


def test_python_predict_accepts_uint8_tensors(trained_run: tuple[Path, Path]) -> None:
    run, _ = trained_run
    classifier = foveal.load(run, device="cpu")
    predictions = classifier.predict(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), top_k=3)
    assert len(predictions) == 2 and len(predictions[0].labels) == 3
    assert sum(predictions[0].probabilities) <= 1.0 + 1e-6
    with pytest.raises(foveal.FovealError, match="expected a uint8 tensor"):
        classifier.predict(torch.zeros(2, 3, 8, 8))


def test_counts_take_the_number_of_their_noun() -> None:
    from foveal.messages import counted

    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(12000, "image") == "12,000 images"


# --help at a glance, docs/options.md, and the options generated from the settings objects (#31)

DOCS_OPTIONS = Path(__file__).resolve().parents[1] / "docs" / "options.md"
LONGEST_HELP = {"train": 150, "compare": 150}  # lines at 80 columns; every other command: 40


def help_lines(*command: str) -> list[str]:
    from typer.testing import CliRunner

    from foveal.cli.main import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize(
    "command",
    [
        "",
        "train",
        "compare",
        "evaluate",
        "predict",
        "explain",
        "report",
        "export",
        "bench",
        "serve",
        "models",
    ],
)
def test_every_help_is_short_at_80_columns(command: str) -> None:
    lines = help_lines(*filter(None, [command]))
    assert max(len(line) for line in lines) <= 80
    assert len(lines) <= LONGEST_HELP.get(command, 40), "\n".join(lines)
    if command:
        assert "Every option in full: docs/options.md" in [line.strip() for line in lines[-2:]]


def test_docs_options_md_is_current() -> None:
    from foveal.cli.reference import reference

    assert DOCS_OPTIONS.read_text() == reference(), (
        "docs/options.md is stale: python -m foveal.cli.reference > docs/options.md"
    )


def test_a_changed_help_text_makes_docs_options_md_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    from foveal.cli.reference import reference
    from foveal.config import ConfigField

    monkeypatch.setattr(ConfigField, "help", property(lambda f: f.field.metadata["help"] + " Changed."))
    assert DOCS_OPTIONS.read_text() != reference()


def test_docs_options_md_holds_every_option_with_its_whole_text() -> None:
    from foveal.config import config_fields, settings_fields
    from foveal.exporting.settings import BenchSettings, ExportSettings
    from foveal.serving.settings import ServeSettings

    text = DOCS_OPTIONS.read_text()
    fields = [
        f for settings in (ServeSettings, BenchSettings, ExportSettings) for f in settings_fields(settings)
    ]
    for f in fields + [f for f in config_fields() if f.flat != "data"]:  # DATA: train's argument
        assert " ".join(f.help.split()).removesuffix(".") in text, f.flat  # its default inside its stop
    sections = [line.removeprefix("## foveal ") for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "train",
        "evaluate",
        "predict",
        "explain",
        "report",
        "compare",
        "export",
        "bench",
        "serve",
        "models",
    ]


def test_serve_options_are_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import foveal.serving.server
    from foveal.serving.settings import ServeSettings

    seen: list[ServeSettings] = []
    monkeypatch.setattr(foveal.serving.server, "serve", seen.append)
    assert foveal_cli("serve", "m").returncode == 0
    given = (
        "--port",
        "9000",
        "--timeout",
        "5",
        "--read-timeout",
        "2",
        "--runtime",
        "onnx",
        "--max-wait-ms",
        "1",
    )
    assert foveal_cli("serve", "m", *given).returncode == 0
    assert seen == [
        ServeSettings(model="m"),
        ServeSettings(
            model="m", port=9000, timeout_s=5.0, read_timeout_s=2.0, runtime="onnx", max_wait_ms=1.0
        ),
    ]
    done = foveal_cli("serve", "m", "--port", "0")  # the settings' own check, said as before
    assert done.returncode == 1 and done.stderr == "error: port must be 1-65535, got 0.\n"


def test_bench_options_are_its_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import foveal.exporting.bench
    from foveal.exporting.settings import BenchSettings

    seen: list[tuple] = []

    def capture(model: str, settings: BenchSettings, *, images: str | None, command: str) -> None:
        seen.append((settings, command))
        raise SystemExit(0)

    monkeypatch.setattr(foveal.exporting.bench, "record_path", lambda model, out: tmp_path / "b.json")
    monkeypatch.setattr(foveal.exporting.bench, "bench_model", capture)
    assert foveal_cli("bench", "m").returncode == 0
    assert foveal_cli("bench", "m", "--no-compile", "--samples", "3", "--threads", "2").returncode == 0
    out = tmp_path / "b.json"
    assert seen == [
        (
            BenchSettings(),
            f"foveal bench m --out {out} --samples 200 --warmup 20 --batch-size 64 --batches 10",
        ),
        (
            BenchSettings(samples=3, compile=False, threads=2),
            f"foveal bench m --out {out} --samples 3 --warmup 20 --batch-size 64 --batches 10 --no-compile "
            "--threads 2",
        ),
    ]
    done = foveal_cli("bench", "m", "--warmup", "-1")
    assert done.returncode == 1 and done.stderr == "error: --warmup must be >= 0, got -1.\n"


def test_export_options_are_its_settings_and_the_library_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import inspect

    import foveal.api
    from foveal.exporting.settings import ExportSettings

    library = inspect.signature(foveal.api.export).parameters
    for f in dataclasses.fields(ExportSettings):  # foveal.export(...) and `foveal export` agree
        assert library[f.name].default == f.default, f.name
    seen: list[dict] = []

    def capture(model: str, **settings: object) -> None:
        seen.append({"model": model, **settings})
        raise SystemExit(0)

    monkeypatch.setattr(foveal.api, "export", capture)
    assert foveal_cli("export", "m").returncode == 0
    given = ("--format", "onnx", "--maps", "rollout", "--force", "--parity-images", "5", "--out", "b")
    assert foveal_cli("export", "m", *given).returncode == 0
    assert seen[0] == {"model": "m", **dataclasses.asdict(ExportSettings())}
    assert seen[1] == {
        "model": "m",
        **dataclasses.asdict(ExportSettings()),
        "format": "onnx",
        "maps": ["rollout"],
        "force": True,
        "parity_images": 5,
        "out": "b",
    }
