"""`foveal export --format mlflow`: an MLflow pyfunc model that MLflow loads and serves, answering what
`foveal predict` answers for image bytes and paths, and a clear error for bad input (issue #34)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from clirun import foveal_cli
from synthetic import tiny_run, with_threshold

import foveal
from foveal.errors import ConfigError, DataError, FovealError

mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
pd = pytest.importorskip("pandas")

CLASSES = ["circle", "square", "triangle"]
PROBABILITY_COLUMNS = [f"probability_{name}" for name in CLASSES]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("mlflow"), "foveal-tiny", per_class=6, epochs=1, tta_flip=True)


@pytest.fixture(scope="module")
def exported(trained: tuple[Path, Path]) -> Path:
    """The MLflow model of the run, written by the command a user types (default folder: run-mlflow)."""
    run, _ = trained
    done = foveal_cli("export", str(run), "--format", "mlflow")
    assert done.returncode == 0, done.stderr
    assert "mlflow models serve -m" in done.stdout and "Downloading" not in done.stderr  # one line
    return run.with_name(run.name + "-mlflow")


@pytest.fixture(scope="module")
def images(trained: tuple[Path, Path]) -> list[Path]:
    """Six images, two of each class."""
    _, data = trained
    return [path for name in CLASSES for path in sorted((data / name).glob("*.png"))[:2]]


def foveal_predict(model: Path, files: list[Path], *options: str) -> list[dict]:
    """What `foveal predict --format json` prints, every class ranked."""
    done = foveal_cli("predict", str(model), *map(str, files), "--format", "json", "--top-k", "3", *options)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_same_answers(frame: pd.DataFrame, expected: list[dict]) -> None:
    """The MLflow model's rows say what `foveal predict` printed: labels, unknown, probabilities."""
    assert list(frame.columns) == ["label", "probability", "unknown", "familiarity", *PROBABILITY_COLUMNS]
    assert frame["label"].tolist() == [e["label"] for e in expected]
    assert frame["unknown"].tolist() == [e["unknown"] for e in expected]
    assert frame["probability"].tolist() == pytest.approx([e["probabilities"][0] for e in expected], abs=1e-5)
    for row, answer in zip(frame.to_dict("records"), expected):
        by_class = dict(zip(answer["labels"], answer["probabilities"]))
        assert [row[f"probability_{name}"] for name in CLASSES] == pytest.approx(
            [by_class[name] for name in CLASSES], abs=1e-5
        )


def test_the_mlflow_model_answers_what_foveal_predict_says_for_bytes_and_paths(
    trained: tuple[Path, Path], exported: Path, images: list[Path]
) -> None:
    run, _ = trained
    model = mlflow_pyfunc.load_model(str(exported))
    expected = foveal_predict(run, images)
    from_bytes = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    from_paths = model.predict(pd.DataFrame({"path": [str(p) for p in images]}))
    assert_same_answers(from_bytes, expected)
    assert_same_answers(from_paths, expected)
    assert len(set(from_bytes["label"])) > 1 or len(set(from_bytes["probability"])) > 1  # not a constant
    # Rows may mix the two columns; base64 text in the image column is read as bytes (JSON's way).
    mixed = pd.DataFrame(
        {
            "image": [images[0].read_bytes(), None, base64.b64encode(images[2].read_bytes()).decode()],
            "path": [None, str(images[1]), None],
        }
    )
    assert_same_answers(model.predict(mixed), expected[:3])
    # params reject=False is --no-reject.
    plain = model.predict(pd.DataFrame({"path": [str(p) for p in images]}), params={"reject": False})
    assert_same_answers(plain, foveal_predict(run, images, "--no-reject"))


def test_the_open_set_threshold_marks_the_same_images_unknown(
    trained: tuple[Path, Path], images: list[Path], tmp_path: Path
) -> None:
    run, _ = trained
    scores = sorted(p.familiarity for p in foveal.load(run, device="cpu").predict(images))
    middle = (scores[2] + scores[3]) / 2  # halfway: round-off cannot move an image across it
    halved = with_threshold(run, tmp_path / "halved.safetensors", middle)
    model = mlflow_pyfunc.load_model(str(foveal.export(halved, tmp_path / "m", format="mlflow")))
    frame = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    expected = foveal_predict(halved, images)
    assert sum(frame["unknown"]) == 3 and "unknown" in set(frame["label"])
    assert_same_answers(frame, expected)


def test_the_model_folder_holds_the_saved_model_its_signature_and_requirements(
    trained: tuple[Path, Path], exported: Path
) -> None:
    run, _ = trained
    weights = exported / "artifacts" / "foveal_model" / "model.safetensors"
    assert weights.read_bytes() == (run / "weights" / "best.safetensors").read_bytes()  # what predict loads
    described = yaml.safe_load((exported / "MLmodel").read_text())
    assert described["metadata"]["classes"] == CLASSES and described["metadata"]["library_name"] == "foveal"
    signature = {key: json.loads(value) for key, value in described["signature"].items() if value}
    assert [(c["name"], c["type"], c["required"]) for c in signature["inputs"]] == [
        ("image", "binary", False),
        ("path", "string", False),
    ]
    assert [c["name"] for c in signature["outputs"]] == [
        "label", "probability", "unknown", "familiarity", *PROBABILITY_COLUMNS
    ]  # fmt: skip
    assert [(p["name"], p["default"]) for p in signature["params"]] == [("reject", True)]
    requirements = (exported / "requirements.txt").read_text().split()
    assert f"foveal=={foveal.__version__}" in requirements
    assert {r.split("==")[0] for r in requirements} >= {"foveal", "torch", "torchvision", "pillow"}
    assert not list(exported.parent.glob(f".{exported.name}.*"))  # no staging folder left behind
    # The input example, as `mlflow models serve` would receive it, predicts.
    from mlflow.models import Model

    example = Model.load(str(exported)).load_input_example(str(exported))
    answer = mlflow_pyfunc.load_model(str(exported)).predict(example)
    assert len(answer) == 1 and answer["label"][0] in CLASSES + ["unknown"]


def test_bad_input_gets_a_clear_error(exported: Path, images: list[Path], tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    model = mlflow_pyfunc.load_model(str(exported))
    good = images[0].read_bytes()
    (tmp_path / "notes.png").write_text("not a picture")
    cases = [
        (pd.DataFrame({"image": [good, b"not an image"]}), r"row 1: not an image"),
        (pd.DataFrame({"image": [good, good[:60]]}), r"row 1: .*expected an image file"),  # truncated
        (pd.DataFrame({"picture": [good]}), r"expected a DataFrame with an 'image' column"),
        (pd.DataFrame({"image": ["%%% not base64 %%%"]}), r"row 0: expected image bytes \(base64"),
        (pd.DataFrame({"image": [good, None], "path": [None, None]}), r"row 1: .*got neither"),
        (pd.DataFrame({"path": [str(tmp_path / "notes.png")]}), r"row 0: not an image"),
        (pd.DataFrame({"path": [str(tmp_path / "gone.png")]}), r"row 0: .*expected an image file"),
        (pd.DataFrame({"image": pd.Series([], dtype=object)}), r"expected at least one image"),
    ]
    for frame, message in cases:
        with pytest.raises(DataError, match=message) as caught:
            model.predict(frame)
        assert isinstance(caught.value, MlflowException)  # `mlflow models serve`: 400 with this message
        assert caught.value.get_http_status_code() == 400


def test_bad_exports_get_one_clear_line(
    trained: tuple[Path, Path], exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = trained
    with pytest.raises(ConfigError, match="--maps"):
        foveal.export(run, tmp_path / "m", format="mlflow", maps=("rollout",))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    done = foveal_cli("export", str(run), "--format", "mlflow", "--out", str(busy))
    assert done.returncode == 1 and "not empty" in done.stderr and len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]  # the user's folder is untouched
    again = foveal.export(run, exported, format="mlflow")  # Foveal's own MLflow model is replaced
    assert again == exported and (exported / "MLmodel").is_file()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    done = foveal_cli("export", str(run), "--format", "mlflow", "--out", str(tmp_path / "none"))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "pip install 'foveal[mlflow]'" in done.stderr and not (tmp_path / "none").exists()
    with pytest.raises(FovealError, match="needs MLflow"):
        foveal.export(run, tmp_path / "none", format="mlflow")


@pytest.mark.slow
def test_mlflow_models_serve_answers_what_foveal_predict_says(
    trained: tuple[Path, Path], exported: Path, images: list[Path], tmp_path: Path
) -> None:
    """`mlflow models serve --env-manager local` as a real process on loopback: JSON with base64 image
    bytes in, `foveal predict`'s answers out; a bad image is a 400 saying why."""
    import httpx

    from foveal.serving.process import free_port

    run, _ = trained
    port = free_port()
    mlflow_command = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  (closed below, after the server stops)
    server = subprocess.Popen(
        [str(mlflow_command), "models", "serve", "-m", str(exported), "--env-manager", "local",
         "-p", str(port), "-h", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own group: uvicorn goes too
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, server, tmp_path / "serve.log")
        encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
        as_split = {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}
        as_records = {"dataframe_records": [{"path": str(p.resolve())} for p in images]}
        expected = foveal_predict(run, images)
        for body in (as_split, as_records):
            answer = httpx.post(url + "/invocations", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            assert_same_answers(pd.DataFrame(answer.json()["predictions"]), expected)
        no_reject = {**as_split, "params": {"reject": False}}
        answer = httpx.post(url + "/invocations", json=no_reject, timeout=60)
        plain = foveal_predict(run, images, "--no-reject")
        assert_same_answers(pd.DataFrame(answer.json()["predictions"]), plain)
        bad = {"dataframe_records": [{"image": base64.b64encode(b"not an image").decode()}]}
        answer = httpx.post(url + "/invocations", json=bad, timeout=60)
        assert answer.status_code == 400 and "row 0: not an image" in answer.json()["message"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def wait_for_ping(url: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Until GET /ping answers 200; fails with the server's output if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow models serve exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    output = log.read_text()[-3000:]
    raise AssertionError(f"mlflow models serve did not answer /ping in {timeout:.0f} s:\n{output}")
