"""The HTTP app of `foveal serve`: FastAPI routes behind two ASGI layers (metrics, then the body limit).

    POST /predict   an image (multipart form file, or the raw body with an image/* type) -> top-k labels
    POST /explain   the same, plus where the model looked: the map on its token grid and an overlay PNG
    GET  /livez     the process is up          GET /readyz  the model is loaded and warmed up (else 503)
    GET  /info      labels, preprocessing, model config, weights sha256, limits
    GET  /metrics   Prometheus text            GET /        the web page (offline: no CDN)

Every error is JSON, {"error": ..., "status": ...}, with the status that says whose fault it is: 400
malformed request, 413 body over --max-bytes, 415 not an image type, 422 an image that does not
decode or is over the pixel limit (or a bad parameter), 503 (Retry-After) queue full or model not yet
ready, 504 not answered within --timeout. Bad input never gets a 500.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from foveal.classifier import Classifier, Prediction, load
from foveal.data.decode import ImageDecodeError, decode_image
from foveal.errors import FovealError
from foveal.explanation.result import Explanation
from foveal.inference import Outputs
from foveal.models.config import config_to_dict
from foveal.serving.batcher import DynamicBatcher, QueueFull
from foveal.serving.limits import ASGIApp, BodyLimit
from foveal.serving.metrics import RecordRequests, ServerMetrics
from foveal.serving.overlay import overlay_png
from foveal.serving.settings import ENV_VAR, ServeSettings

log = logging.getLogger("foveal.serve")
PAGE = Path(__file__).with_name("page.html")
RETRY_AFTER_S = 1  # what a 503 asks the client to wait: about one batch's time under load
ACCEPTED_TYPES = "image/* (the raw body), multipart/form-data (a file field) or application/octet-stream"


class ApiError(Exception):
    """An answer other than 200, with the words that say what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class ModelHost:
    """The loaded model and its batcher; loaded in the background so /livez answers at once."""

    def __init__(
        self, settings: ServeSettings, metrics: ServerMetrics, classifier: Classifier | None
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.ready = False
        self.failure: str | None = None
        self.sha256 = ""
        self.batcher = DynamicBatcher(
            self._outputs,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            metrics=metrics,
        )

    def _outputs(self, images: torch.Tensor) -> list[Outputs]:
        """One Outputs per image of uint8 images (B, 3, S, S), through the one inference path."""
        return self.classifier.outputs(images).rows()

    def load_and_warm(self) -> None:
        """On the model thread: set the thread count once, load, hash the weights, run one batch."""
        settings = self.settings
        threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
        torch.set_num_threads(threads)
        try:
            if self.classifier is None:
                self.classifier = load(resolve_served_model(settings), device="auto")
            self.sha256 = file_sha256(self.classifier.source)
            size = self.classifier.preprocessing.img_size
            self._outputs(torch.zeros(min(settings.max_batch, 8), 3, size, size, dtype=torch.uint8))
            self.ready = True
            log.info("model %s ready (%d threads)", self.model_id, threads)
        except FovealError as error:
            self.failure = str(error)
            log.error("the model could not be loaded: %s", error)

    @property
    def model_id(self) -> str:
        return f"{self.classifier.info.config.name}@{self.sha256[:12]}" if self.classifier else ""

    def require_ready(self) -> Classifier:
        if not self.ready:
            message = self.failure or "the model is still loading; try again in a moment."
            raise ApiError(503, message, {"Retry-After": str(RETRY_AFTER_S)})
        return self.classifier


def resolve_served_model(settings: ServeSettings) -> Path:
    """The file to load: MODEL itself, or with --runtime onnx and a bundle or run folder, the model.onnx
    in it or in the bundle `foveal export RUN --format onnx` wrote beside it (RUN-bundle)."""
    model = Path(settings.model)
    if model.suffix == ".onnx" or settings.runtime != "onnx":
        if settings.runtime == "torch" and model.suffix == ".onnx":
            raise FovealError(
                f"{model} is an ONNX model; serve it with --runtime onnx (or leave --runtime out)."
            )
        return model
    for candidate in (model / "model.onnx", model.with_name(model.name + "-bundle") / "model.onnx"):
        if candidate.is_file():
            return candidate
    raise FovealError(
        f"--runtime onnx needs a model.onnx; none is in {model} or {model.name}-bundle. Export one first: "
        f"foveal export {model} --format onnx"
    )


def file_sha256(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def read_image_bytes(request: Request) -> bytes:
    """The image's bytes from a multipart form's first file part or from the raw body (image/* type)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16)
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(
                422, "the form has no file; send the image as a file field, e.g. curl -F file=@cat.jpg"
            )
        part_type = (files[0].content_type or "").split(";")[0].strip().lower()
        if part_type and not _is_image_type(part_type):
            raise ApiError(
                415, f"the uploaded file is {part_type!r}, not an image; send a JPEG, PNG, ... file."
            )
        return await files[0].read()
    if not _is_image_type(content_type):
        shown = content_type or "no Content-Type"
        raise ApiError(415, f"{shown} is not an image type; send {ACCEPTED_TYPES}.")
    return await request.body()


def _is_image_type(content_type: str) -> bool:
    return content_type.startswith("image/") or content_type == "application/octet-stream"


async def decode_request(request: Request, host: ModelHost, classifier: Classifier) -> torch.Tensor:
    """The request's image as uint8 (3, S, S) at the model's size; 422 when it does not decode."""
    data = await read_image_bytes(request)
    size = classifier.preprocessing.img_size
    try:
        return await asyncio.to_thread(decode_image, data, size, max_pixels=host.settings.max_pixels)
    except ImageDecodeError as error:
        raise ApiError(422, f"the image could not be read: {error.reason}") from None


def prediction_fields(prediction: Prediction) -> dict:
    """What /predict and /explain say of the image's labels."""
    return {
        "label": prediction.label,  # "unknown" when rejected
        "unknown": prediction.unknown,
        "familiarity": prediction.familiarity,  # None when the model has no threshold or reject=false
        "predictions": [
            {"label": label, "score": round(score, 6)}
            for label, score in zip(prediction.labels, prediction.probabilities)
        ],
    }


def create_app(settings: ServeSettings, classifier: Classifier | None = None) -> ASGIApp:
    """The served app: RecordRequests(BodyLimit(FastAPI routes)). `classifier`: an already loaded
    model (else settings.model is loaded in the background at startup)."""
    metrics = ServerMetrics(across_processes=settings.workers > 1)
    host = ModelHost(settings, metrics, classifier)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        host.batcher.start()
        loading = asyncio.get_running_loop().run_in_executor(host.batcher.model_thread, host.load_and_warm)
        yield
        await asyncio.gather(loading, return_exceptions=True)
        await host.batcher.stop()

    app = FastAPI(
        title="Foveal model server",
        description="Predictions and attention maps of a Foveal image classifier.",
        lifespan=lifespan,
    )
    app.state.host = host

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in error.errors()
        )
        return error_response(422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def failure(_: Request, error: Exception) -> JSONResponse:  # the server's own fault
        log.exception("request failed")
        return error_response(
            500, f"internal error ({type(error).__name__}); the server log has the details."
        )

    async def answer(call):
        """`call`'s result, or the 503 (queue full) or 504 (timeout) that says why not."""
        try:
            return await asyncio.wait_for(call, host.settings.timeout_s)
        except QueueFull:
            raise ApiError(
                503,
                f"the server is busy ({host.settings.max_queue} requests waiting); retry shortly.",
                {"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11 on)
            raise ApiError(504, f"no answer within {host.settings.timeout_s:g} s; retry later.") from None

    @app.post("/predict", summary="Top-k labels of one image, or unknown if it is unlike every class")
    async def predict(
        request: Request,
        top_k: int = Query(settings.top_k, ge=1, le=1000),
        reject: bool = Query(True, description="false: never answer unknown, always the nearest class"),
    ) -> dict:
        started = time.perf_counter()
        classifier = host.require_ready()
        image = await decode_request(request, host, classifier)
        outputs = await answer(host.batcher.submit(image))  # this image's Outputs (logits (1, K))
        [prediction] = classifier.predictions(outputs, ["upload"], top_k, reject=reject)
        return {
            "model": host.model_id,
            **prediction_fields(prediction),
            "time_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @app.post("/explain", summary="Top-k labels and where the model looked")
    async def explain(
        request: Request,
        top_k: int = Query(settings.top_k, ge=1, le=1000),
        method: str | None = Query(None, description="an explanation method of /info's 'methods'"),
        reject: bool = Query(True, description="false: never answer unknown, always the nearest class"),
    ) -> dict:
        started = time.perf_counter()
        classifier = host.require_ready()
        if method is not None and method not in classifier.methods:
            raise ApiError(
                422, f"unknown method {method!r} for this model; choose one of {classifier.methods}."
            )
        image = await decode_request(request, host, classifier)

        def predict_and_explain() -> tuple[Prediction, Explanation]:
            batch = image.unsqueeze(0)
            [prediction] = classifier.predict(batch, top_k, reject=reject)
            [explained] = classifier.explain(batch, method=method, top_k=top_k)
            return prediction, explained

        prediction, explained = await answer(host.batcher.run_exclusive(predict_and_explain))
        return {
            "model": host.model_id,
            **prediction_fields(prediction),
            "method": explained.method,
            "target": explained.target,
            "grid": list(explained.grid),
            "map": explained.token_map,
            "overlay_png": base64.b64encode(overlay_png(explained.image, explained.pixel_map)).decode(),
            "time_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @app.get("/livez", summary="The process is up")
    async def livez() -> dict:
        return {"status": "alive"}

    @app.get("/readyz", summary="The model is loaded and warmed up")
    async def readyz() -> JSONResponse:
        if host.ready:
            return JSONResponse({"status": "ready", "model": host.model_id})
        status = "failed" if host.failure else "loading"
        return JSONResponse({"status": status, "error": host.failure}, status_code=503)

    @app.get("/info", summary="Labels, preprocessing, model config, weights hash and limits")
    async def info() -> dict:
        classifier = host.require_ready()
        limits = asdict(host.settings)
        del limits["model"], limits["host"], limits["port"]
        return {
            "model": host.model_id,
            "name": classifier.info.config.name,
            "classes": classifier.classes,
            "preprocessing": classifier.preprocessing.to_dict(),
            "config": config_to_dict(classifier.info.config),
            "weights_sha256": host.sha256,
            "runtime": "onnx" if str(classifier.source).endswith(".onnx") else "torch",
            "methods": classifier.methods,
            "limits": limits,
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return RecordRequests(BodyLimit(app, max_bytes=settings.max_bytes), metrics=metrics)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def app_from_env() -> ASGIApp:
    """For uvicorn's worker processes (--workers > 1): the settings come in ENV_VAR, as JSON."""
    return create_app(ServeSettings.from_json(os.environ[ENV_VAR]))
