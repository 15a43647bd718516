"""Start the server: check what can be checked before listening, then hand the app to uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn

from foveal.errors import FovealError
from foveal.saved import resolve_model_path
from foveal.serving.app import app_from_env, create_app, resolve_served_model
from foveal.serving.metrics import MULTIPROC_ENV
from foveal.serving.settings import ENV_VAR, ServeSettings


def serve(settings: ServeSettings) -> None:
    """Run `foveal serve` until interrupted. A missing model fails here, before listening."""
    path = resolve_served_model(settings)
    if path.suffix != ".onnx":
        resolve_model_path(path)  # raises a clear ModelFileError for a folder with no model in it
    elif not path.is_file():
        raise FovealError(f"{path} does not exist; give a model.onnx that `foveal export` wrote.")
    print(
        f"serving {path} on http://{settings.host}:{settings.port} (the page: /, the API: /docs)", flush=True
    )
    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
        return
    # Each worker process builds its app from ENV_VAR and writes its metrics to files in a folder of
    # this run's own (prometheus_client reads MULTIPROC_ENV when a worker imports it), removed after.
    metrics_dir = tempfile.mkdtemp(prefix="foveal-serve-metrics-")
    told = {ENV_VAR: settings.to_json(), MULTIPROC_ENV: metrics_dir}
    before = {name: os.environ.get(name) for name in told}
    os.environ.update(told)
    try:
        uvicorn.run(
            f"{app_from_env.__module__}:{app_from_env.__name__}",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level="warning",
        )
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)
