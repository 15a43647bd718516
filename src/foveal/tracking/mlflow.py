"""MLflow: the run as an MLflow run, on a tracking server or in a local store in the run folder.

Params: the resolved settings by dotted group name (optim.lr, data.img_size, ...). Metrics: the
same figures as TensorBoard's, each with its optimizer step. Tags: model, data, device, Foveal's
version. At the end, the run folder's files as artifacts (report, weights, config, split, results)
and the confusion matrix and attention overlays.

Resume: the MLflow run's id is kept in RUN/mlflow.json, and `foveal train --resume RUN` continues
that run. MLflow keeps every value logged for a step, so a step logged twice would show twice;
metrics are therefore held back until the training state that includes their step is saved
(`checkpointed`): what MLflow holds is never past what a resume continues from, and the steps a
crash loses are logged once, by the resumed run. A crash between a checkpoint and its upload leaves
those steps out rather than twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from foveal.config import TrackingConfig, TrainConfig
from foveal.io import atomic_write_json
from foveal.tracking.interface import (
    RunEnd,
    RunStart,
    Status,
    Tracker,
    TrackingFailed,
    TrackingUnavailable,
    epoch_figures,
)

RUN_FILE = "mlflow.json"  # in the run folder: the tracking URI, experiment and run id a resume continues
LOCAL_STORE = "mlflow.db"  # the local store (sqlite: MLflow 3 keeps its file store in maintenance)
LOCAL_ARTIFACTS = "mlartifacts"
NOT_ARTIFACTS = {"checkpoints", "tensorboard", LOCAL_STORE, LOCAL_ARTIFACTS, RUN_FILE}  # in the run folder
# The client's settings, set unless the user set them. A server that is gone must cost the run seconds,
# once, not MLflow's default 7 retries with exponential backoff and a 120 s timeout each (minutes a call).
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # seconds: waits of 0 and 2 s between the tries
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds per try
    # MLflow prints two emoji lines naming the run's web page at its end, on stdout, --quiet or not:
    # RUN/mlflow.json names the run, and stdout stays the command's own.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limits
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
STATUSES = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
T = TypeVar("T")


def client_class() -> type:
    """mlflow's MlflowClient, or TrackingUnavailable naming the extra to install."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingUnavailable(
            "--log mlflow needs the mlflow package; install it with `pip install 'foveal[mlflow]'`."
        ) from None
    return MlflowClient


class MlflowTracker(Tracker):
    """One MLflow run per Foveal run, continued by a resume."""

    name = "mlflow"
    wants_pictures = True

    def __init__(self, settings: TrackingConfig, resumed: Path | None = None) -> None:
        """Check that MLflow is installed and the tracking server answers, before the run folder
        is made; `resumed`: the run folder of a resumed run, whose RUN_FILE names its MLflow run."""
        for name, value in HTTP_SETTINGS.items():
            os.environ.setdefault(name, value)
        self.client_class = client_class()
        self.settings = settings
        self.continued = read_run_file(resumed) if resumed is not None else None
        if self.continued is not None:  # the local store: where the run folder is now
            self.uri: str | None = None if self.continued.get("local") else self.continued["tracking_uri"]
        else:
            self.uri = settings.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if self.uri is not None:
            check_store(self.client_class, self.uri)
        self.pending: list[Any] = []  # metrics held back until their step is checkpointed

    def start(self, run: RunStart) -> None:
        local = self.uri is None
        self.uri = self.uri or f"sqlite:///{(run.run_dir / LOCAL_STORE).resolve()}"
        self.run_dir = run.run_dir
        with quiet_store_setup():
            self.client = self._call("open the tracking store", self.client_class, self.uri)
        if self.continued is not None:
            self.run_id = self.continued["run_id"]
            self._call("continue the run", self.client.update_run, self.run_id, "RUNNING")
            return
        artifacts = (run.run_dir / LOCAL_ARTIFACTS).resolve().as_uri() if local else None
        experiment = self._call("find the experiment", self._experiment, artifacts)
        created = self._call(
            "create the run", self.client.create_run, experiment, tags=run.tags, run_name=run.run_dir.name
        )
        self.run_id = created.info.run_id
        atomic_write_json(
            run.run_dir / RUN_FILE,
            {"tracking_uri": self.uri, "local": local, "experiment_id": experiment, "run_id": self.run_id},
        )
        self._log_params(params_of(run.config))

    def step(self, step: int, values: dict[str, float]) -> None:
        self._hold(step, values)

    def epoch(self, step: int, rows: list[dict[str, Any]]) -> None:
        self._hold(step, epoch_figures(rows[-1]))

    def checkpointed(self, step: int) -> None:
        self._flush()

    def finish(self, end: RunEnd) -> None:
        self._hold(end.step, end.metrics)
        self._flush()
        for path in end.pictures.values():
            if path.parent == self.run_dir:  # uploaded with the run folder below
                continue
            self._call("upload a picture", self.client.log_artifact, self.run_id, str(path), "pictures")
        for path in sorted(self.run_dir.iterdir()):
            if path.name in NOT_ARTIFACTS or path.name.startswith("."):
                continue
            if path.is_dir():
                self._call(
                    "upload the run folder", self.client.log_artifacts, self.run_id, str(path), path.name
                )
            else:
                self._call("upload the run folder", self.client.log_artifact, self.run_id, str(path))

    def close(self, status: Status) -> None:
        if getattr(self, "run_id", None) is not None:
            self._call("end the run", self.client.set_terminated, self.run_id, STATUSES[status])

    def _experiment(self, artifacts: str | None) -> str:
        name = self.settings.mlflow_experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifacts)

    def _hold(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.pending += [Metric(key, value, stamp, step) for key, value in values.items()]

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            batch = pending[start : start + MAX_METRICS_PER_BATCH]
            self._call("log metrics", self.client.log_batch, self.run_id, metrics=batch)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            batch = items[start : start + MAX_PARAMS_PER_BATCH]
            self._call("log the settings", self.client.log_batch, self.run_id, params=batch)

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)`; any failure of MLflow's becomes TrackingFailed."""
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (MlflowException, requests' errors, OSError...)
            raise TrackingFailed(f"could not {what} at {self.uri}: {reason(error)}") from None


def check_store(client_class: type, uri: str) -> None:
    """Open the tracking store at `uri` and, for a server, ask it one quick question;
    TrackingUnavailable if that fails (a server that does not answer, a URI MLflow cannot use)."""
    server = uri.startswith(("http://", "https://"))
    try:
        with quiet_store_setup():
            client = client_class(uri)
        if server:
            client.search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001  (whatever the request raised, the answer is "no")
        what = "does not answer" if server else "cannot be used"
        raise TrackingUnavailable(
            f"the MLflow tracking {'server' if server else 'store'} at {uri} {what} ({reason(error)}); "
            f"{'start it, or ' if server else ''}point --mlflow-uri or MLFLOW_TRACKING_URI at one that does."
        ) from None


def reason(error: Exception) -> str:
    """A short why from MLflow's long messages: the OS error ('Connection refused'), else its first
    line, cut."""
    text = str(error)
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(Read timed out)", r"(failed with error code \d+)"):
        found = re.findall(pattern, text)
        if found:
            return found[-1].strip()
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def params_of(config: TrainConfig) -> dict[str, str]:
    """{group.field: value as text} of every setting, e.g. {"optim.lr": "0.001"}."""
    return {
        f"{group}.{name}": str(value)[:MAX_PARAM_LENGTH]
        for group, fields in config.to_dict().items()
        for name, value in fields.items()
    }


def read_run_file(run_dir: Path) -> dict[str, str] | None:
    """A resumed run folder's RUN_FILE, or None when the run never got so far as creating its run."""
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class quiet_store_setup:
    """Within the block, MLflow's and alembic's INFO lines of a new store's tables are not shown."""

    NAMES = ("mlflow.store.db.utils", "alembic.runtime.migration")

    def __enter__(self) -> None:
        self.levels = [logging.getLogger(name).level for name in self.NAMES]
        for name in self.NAMES:
            logging.getLogger(name).setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        for name, level in zip(self.NAMES, self.levels):
            logging.getLogger(name).setLevel(level)
