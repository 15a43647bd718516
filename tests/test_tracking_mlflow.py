"""`--log mlflow`: real runs recorded on a real `mlflow server` on loopback (its own process, a
sqlite store, proxied artifacts) and in the local store, read back with MlflowClient; a crashed
run resumed continues the same MLflow run with no step twice; a server killed mid-run costs one
warning, not the run; a missing package or a silent server is one line before any folder exists;
under torchrun only rank 0 records.

A server takes 10 s to a minute to start (its imports and tables), so the tests that need one
share one per module and are `slow`; so are the local store's (its tables take seconds too).
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import foveal_cli
from test_distributed import options as distributed_options
from test_distributed import run as run_launcher
from tracked import STEPS_PER_EPOCH, crash_at, events, steps

import foveal

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

# SQLAlchemy's, inside MLflow's sqlite store: nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
SERVER_START_TIMEOUT_S = 240  # a loaded CI machine: imports and the store's tables


@dataclass
class Server:
    uri: str
    process: subprocess.Popen

    def stop(self) -> None:
        """End the server and the workers it started (its own process group), and wait for them."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[Server]:
    """`mlflow server` on a free loopback port, its runs in folder/store.db and artifacts in
    folder/artifacts (served through it), once its /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'store.db'}"),
        *("--artifacts-destination", str(folder / "artifacts")),
    ]
    log = (folder / "server.log").open("w")
    server = Server(
        f"http://127.0.0.1:{port}",
        subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Without the job runners (a dozen processes polling a queue) the tracking API does not use.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ),
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{server.uri}/health", timeout=2).read()
                break
            if server.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        log.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as server:
        yield server


@pytest.fixture
def no_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def run_of(client: MlflowClient, run: Path):
    run_id = (run / "mlflow.json").read_text().split('"run_id": "')[1].split('"')[0]
    return client.get_run(run_id)


def history_steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def artifact_names(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


# --- in the default suite: the one-line failures ----------------------------------------------------


def test_a_silent_server_is_one_line_before_any_folder(class_folder: Path, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "runs"
    started = time.perf_counter()
    result = foveal_cli("train", str(class_folder), "--out", str(out), "--log", "mlflow", "--mlflow-uri", uri)
    seconds = time.perf_counter() - started
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the MLflow tracking server at {uri} does not answer (Connection refused); start it, or "
        "point --mlflow-uri or MLFLOW_TRACKING_URI at one that does."
    ]
    assert not out.exists()
    print(f"\nrefused in {seconds:.1f} s (MLflow's import included)")
    assert seconds < 60  # 2 retries with backoff: about 3 s, not MLflow's default minutes


def test_a_store_mlflow_cannot_use_is_one_line_before_any_folder(class_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = foveal_cli(
        "train", str(class_folder), "--out", str(out), "--log", "mlflow", "--mlflow-uri", "htp://x"
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: the MLflow tracking store at htp://x cannot be used (")
    assert line.endswith("point --mlflow-uri or MLFLOW_TRACKING_URI at one that does.")
    assert not out.exists()


def test_a_missing_mlflow_is_one_line_before_any_folder(
    class_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import fails as if not installed
    out = tmp_path / "runs"
    result = foveal_cli("train", str(class_folder), "--out", str(out), "--log", "mlflow")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --log mlflow needs the mlflow package; install it with `pip install 'foveal[mlflow]'`."
    ]
    assert not out.exists()


# --- slow: real stores --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_server_records_params_metrics_tags_and_the_run_folder(
    class_folder: Path, tiny_train_options: dict, shared_server: Server
) -> None:
    options = {**tiny_train_options, "report": True}  # report.html is one of the artifacts
    result = foveal.train(
        data=str(class_folder),
        **options,
        log="mlflow",
        mlflow_uri=shared_server.uri,
        mlflow_experiment="records",
    )
    client = MlflowClient(shared_server.uri)
    recorded = run_of(client, result.run_dir)
    run_id = recorded.info.run_id
    assert recorded.info.status == "FINISHED"
    assert client.get_experiment(recorded.info.experiment_id).name == "records"
    params = recorded.data.params
    assert params["data.img_size"] == "16" and params["optim.batch_size"] == "8"
    assert params["model.preset"] == "foveal-tiny" and params["tracking.log"] == "('mlflow',)"
    assert float(params["optim.lr"]) == result.config.optim.lr
    tags = recorded.data.tags
    assert tags["model"] == "foveal-tiny" and tags["device"] == "cpu"
    assert tags["foveal_version"] == foveal.__version__ and str(class_folder) in tags["data"]
    every_step = list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert history_steps(client, run_id, "train/loss") == every_step
    assert history_steps(client, run_id, "train/lr") == every_step
    rows = list(csv.DictReader((result.run_dir / "results.csv").open()))
    val = sorted(client.get_metric_history(run_id, "val/top1"), key=lambda m: m.step)
    assert [m.step for m in val] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [m.value for m in val] == pytest.approx([float(r["val_top1"]) for r in rows], rel=1e-5)
    assert history_steps(client, run_id, "train/images_per_second") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert recorded.data.metrics["final/top1"] == pytest.approx(result.metrics.top1)
    top = artifact_names(client, run_id)
    assert {
        "report.html",
        "config.json",
        "split.json",
        "results.csv",
        "metrics.json",
        "weights",
        "pictures",
    } <= top
    assert {"checkpoints", "tensorboard", "mlflow.json"}.isdisjoint(top)
    assert artifact_names(client, run_id, "weights") == {"best.safetensors", "last.safetensors"}
    assert artifact_names(client, run_id, "pictures") == {"attention.png"}


@pytest.mark.slow
def test_a_crashed_run_resumed_continues_the_same_mlflow_run_with_no_step_twice(
    class_folder: Path, tiny_train_options: dict, shared_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints at steps 3 and 5, a crash at step 8: MLflow holds steps 1-5 (what is checkpointed),
    and the resumed run adds 6-10 to the same run."""
    options = {
        **tiny_train_options,
        "checkpoint_every_steps": 3,
        "keep_checkpoints": 10,
        "log": ["mlflow"],
        "mlflow_uri": shared_server.uri,
        "mlflow_experiment": "resume",
    }
    crash_at(monkeypatch, 8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        foveal.train(data=str(class_folder), **options)
    monkeypatch.undo()
    run = Path(options["out"]) / "train"
    client = MlflowClient(shared_server.uri)
    crashed = run_of(client, run)
    assert crashed.info.status == "FAILED"
    assert history_steps(client, crashed.info.run_id, "train/loss") == [1, 2, 3, 4, 5]
    foveal.train(resume=run, quiet=True)
    resumed = run_of(client, run)
    assert resumed.info.run_id == crashed.info.run_id and resumed.info.status == "FINISHED"
    assert len(client.search_runs([crashed.info.experiment_id])) == 1
    assert history_steps(client, resumed.info.run_id, "train/loss") == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert history_steps(client, resumed.info.run_id, "val/top1") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


@pytest.mark.slow
def test_a_server_killed_mid_run_costs_one_warning_not_the_run(
    class_folder: Path,
    tiny_train_options: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from foveal.training import loop

    options = {**tiny_train_options, "checkpoint_every_steps": 2, "log": ["mlflow"]}
    with mlflow_server(tmp_path / "doomed") as server:
        real, calls = loop.train_step, [0]

        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 4:  # after the checkpoint of step 2 was uploaded
                server.stop()
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "train_step", step)
        started = time.perf_counter()
        result = foveal.train(data=str(class_folder), **options, mlflow_uri=server.uri)
        seconds = time.perf_counter() - started
    assert (result.run_dir / "weights" / "best.safetensors").is_file()
    assert (result.run_dir / "metrics.json").is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: mlflow stopped recording this run (could not log metrics at ")
    assert warnings[0].endswith("Connection refused); training goes on")
    print(f"\nthe run with its server killed at step 4: {seconds:.1f} s")


@pytest.mark.slow
def test_the_local_store_records_the_run_in_its_folder_and_a_resume_continues_it(
    class_folder: Path, tiny_train_options: dict, no_tracking_uri: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {**tiny_train_options, "checkpoint_every_steps": 3, "log": ["mlflow", "tensorboard"]}
    crash_at(monkeypatch, 8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        foveal.train(data=str(class_folder), **options)
    monkeypatch.undo()
    run = Path(options["out"]) / "train"
    foveal.train(resume=run, quiet=True)
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    recorded = run_of(client, run)
    assert recorded.info.status == "FINISHED" and recorded.info.run_name == run.name
    assert len(client.search_runs([recorded.info.experiment_id])) == 1
    assert client.get_experiment(recorded.info.experiment_id).name == "foveal"
    assert history_steps(client, recorded.info.run_id, "train/loss") == list(
        range(1, 2 * STEPS_PER_EPOCH + 1)
    )
    assert recorded.info.artifact_uri.startswith((run / "mlartifacts").resolve().as_uri())
    assert "best.safetensors" in artifact_names(client, recorded.info.run_id, "weights")


@pytest.mark.slow
def test_under_torchrun_only_rank_0_records(
    class_folder: Path, tmp_path: Path, no_tracking_uri: None
) -> None:
    args = [*distributed_options(tmp_path, "two"), "--log", "tensorboard", "--log", "mlflow"]
    # "-m --": torchrun would read --log as an ambiguous abbreviation of its --log-dir (docs/tracking.md)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "--",
    ]
    launched = run_launcher([*command, "foveal", "train", str(class_folder), *args])
    assert launched.returncode == 0, launched.stderr[-3000:]
    run = tmp_path / "two"
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    every_step = list(range(1, 13))  # 33 images in global batches of 6, two epochs
    assert steps(events(run), "train/loss") == every_step
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    recorded = run_of(client, run)
    assert len(client.search_runs([recorded.info.experiment_id])) == 1
    assert history_steps(client, recorded.info.run_id, "train/loss") == every_step
