"""Start the server: check what can be checked before listening, then hand the app to uvicorn."""

from __future__ import annotations

import os

import uvicorn

from foveal.errors import FovealError
from foveal.saved import resolve_model_path
from foveal.serving.app import app_from_env, create_app, resolve_served_model
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
    os.environ[ENV_VAR] = settings.to_json()  # each worker process builds its app from it
    uvicorn.run(
        f"{app_from_env.__module__}:{app_from_env.__name__}",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
    )
