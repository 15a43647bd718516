"""Start the server: check what can be checked before listening, then hand the app to uvicorn."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile

import uvicorn

from foveal.errors import FovealError
from foveal.predictor.saved import resolve_model_path
from foveal.serving.app import app_from_env, create_app
from foveal.serving.host import resolve_served_model
from foveal.serving.metrics import MULTIPROC_ENV
from foveal.serving.protocol import H11WithHeaderDeadline
from foveal.serving.settings import ENV_VAR, ServeSettings


def serve(settings: ServeSettings) -> None:
    """Run `foveal serve` until interrupted. A missing model fails here, before listening."""
    path = resolve_served_model(settings)
    if path.suffix != ".onnx":
        resolve_model_path(path)  # raises a clear ModelFileError for a folder with no model in it
    elif not path.is_file():
        raise FovealError(f"{path} does not exist; give a model.onnx that `foveal export` wrote.")
    check_can_listen(settings.host, settings.port)
    print(
        f"serving {path} on http://{settings.host}:{settings.port} (the page: /, the API: /docs)", flush=True
    )
    if settings.workers == 1:
        H11WithHeaderDeadline.header_timeout_s = settings.read_timeout_s
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            http=H11WithHeaderDeadline,
            log_level="warning",
        )
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
            http=H11WithHeaderDeadline,
            log_level="warning",
        )
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)


def check_can_listen(host: str, port: int) -> None:
    """Bind host:port as uvicorn will (SO_REUSEADDR), then let go: a port in use, or an address this
    machine does not have, is one line naming --port or --host before anything says 'serving'."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise FovealError(
            f"cannot listen on --host {host!r} ({error.strerror}); give an address of this machine, "
            "e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network)."
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise FovealError(
                    f"port {port} on {host} is in use (another server?); choose a free one with --port, "
                    f"e.g. --port {port + 1 if port < 65535 else 8000}."
                ) from None
            if error.errno == errno.EACCES:
                raise FovealError(
                    f"port {port} needs administrator rights on this machine; choose --port 1024 or above."
                ) from None
            raise FovealError(
                f"cannot listen on --host {host} --port {port} ({error.strerror}); give an address of "
                "this machine with --host, e.g. 127.0.0.1 or 0.0.0.0."
            ) from None
