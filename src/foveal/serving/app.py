"""The HTTP app of `foveal serve`: FastAPI routes behind two ASGI layers (metrics, then the limits).

    POST /predict   an image (multipart form file, or the raw body with an image/* type) -> top-k labels
    POST /explain   the same, plus where the model looked: the map on its token grid and an overlay PNG
    GET  /livez     the process is up          GET /readyz  the model is loaded and warmed up (else 503)
    GET  /info      labels, preprocessing, model config, weights sha256, limits
    GET  /metrics   Prometheus text            GET /        the web page (offline: no CDN)

Every error is JSON, {"error": ..., "status": ...}, with the status that says whose fault it is
(docs/serving.md and /openapi.json list them per route). Bad input never gets a 500; a client that
hangs up is counted as 499 and logged in one line.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from foveal.explanation.result import Explanation
from foveal.explanation.workflow import default_method, explain_images
from foveal.models.config import config_to_dict
from foveal.models.maps import METHODS
from foveal.predictor.classifier import Classifier, Prediction
from foveal.serving.batcher import QueueFull
from foveal.serving.errors import CLIENT_CLOSED, ApiError, log, log_refusal, show_log
from foveal.serving.host import ModelHost
from foveal.serving.limits import RETRY_AFTER_S, ASGIApp, RequestLimits
from foveal.serving.metrics import RecordRequests, ServerMetrics
from foveal.serving.overlay import overlay_png
from foveal.serving.protocol import H11WithHeaderDeadline
from foveal.serving.schema import (
    IMAGE_ANSWERS,
    IMAGE_BODY,
    NOT_READY,
    ExplainAnswer,
    PredictAnswer,
    Readiness,
    Status,
)
from foveal.serving.settings import ENV_VAR, ServeSettings
from foveal.serving.upload import decode_upload, read_image_bytes

PAGE = Path(__file__).with_name("page.html")
Method = Literal[METHODS]  # type: ignore[valid-type]  # the enum /openapi.json gives `method`
REJECT = Query(True, description="false: never answer unknown, always the nearest class")


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
    """The served app: RecordRequests(RequestLimits(FastAPI routes)). `classifier`: an already loaded
    model (else settings.model is loaded in the background at startup)."""
    show_log()
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
        description="Predictions and attention maps of a Foveal image classifier. Every answer other "
        'than 200 is JSON: {"error": what to do, "status": N}.',
        lifespan=lifespan,
    )
    app.state.host = host
    add_error_handlers(app)

    async def within_timeout(work: Any) -> Any:
        """`work`'s result (decoding and the model), or the 503 (queue full) or 504 (past --timeout)."""
        try:
            return await asyncio.wait_for(work, host.settings.timeout_s)
        except QueueFull:
            raise ApiError(
                503,
                f"the server is busy ({host.settings.max_queue} requests waiting); retry shortly.",
                {"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11 on)
            raise ApiError(504, f"no answer within {host.settings.timeout_s:g} s; retry later.") from None

    image_route = {"responses": IMAGE_ANSWERS, "openapi_extra": IMAGE_BODY}

    @app.post(
        "/predict",
        summary="Top-k labels of one image, or unknown if it is unlike every class",
        response_model=PredictAnswer,
        **image_route,
    )
    async def predict(
        request: Request, top_k: int = Query(settings.top_k, ge=1, le=1000), reject: bool = REJECT
    ) -> dict:
        started = time.perf_counter()
        classifier = host.require_ready()
        data = await read_image_bytes(request)

        async def decode_and_run() -> Any:
            image = await decode_upload(data, classifier.preprocessing, host.settings.max_pixels)
            return await host.batcher.submit(image)  # this image's Outputs (logits (1, K))

        outputs = await within_timeout(decode_and_run())
        [prediction] = classifier.predictions(outputs, ["upload"], top_k, reject=reject)
        return {
            "model": host.model_id,
            **prediction_fields(prediction),
            "time_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    @app.post(
        "/explain",
        summary="Top-k labels and where the model looked",
        response_model=ExplainAnswer,
        **image_route,
    )
    async def explain(
        request: Request,
        top_k: int = Query(settings.top_k, ge=1, le=1000),
        method: Method | None = Query(
            None, description="the explanation method; /info's 'methods' lists this model's (others: 422)"
        ),
        reject: bool = REJECT,
    ) -> dict:
        started = time.perf_counter()
        classifier = host.require_ready()
        if method is not None and method not in classifier.methods:
            raise ApiError(
                422, f"method {method!r} cannot explain this model; choose one of {classifier.methods}."
            )
        data = await read_image_bytes(request)

        def predict_and_explain(batch) -> tuple[Prediction, Explanation]:
            [prediction] = classifier.predict(batch, top_k, reject=reject)
            [explained] = explain_images(classifier, batch, ["image"], method=method, top_k=top_k)
            return prediction, explained

        async def decode_and_run() -> tuple[Prediction, Explanation]:
            image = await decode_upload(data, classifier.preprocessing, host.settings.max_pixels)
            return await host.batcher.run_exclusive(lambda: predict_and_explain(image.unsqueeze(0)))

        prediction, explained = await within_timeout(decode_and_run())
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

    @app.get("/livez", summary="The process is up", response_model=Status)
    async def livez() -> dict:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        summary="The model is loaded and warmed up",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "loading, or failed to load"}},
    )
    async def readyz() -> JSONResponse:
        if host.ready:
            return JSONResponse({"status": "ready", "model": host.model_id})
        status = "failed" if host.failure else "loading"
        return JSONResponse({"status": status, "error": host.failure}, status_code=503)

    @app.get(
        "/info",
        summary="Labels, preprocessing, model config, weights hash and limits",
        response_model=dict[str, Any],
        responses=NOT_READY,
    )
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
            "default_method": default_method(classifier.methods),
            "limits": limits,
        }

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    limited = RequestLimits(
        app,
        max_bytes=settings.max_bytes,
        read_timeout_s=settings.read_timeout_s,
        max_uploads=settings.max_uploads,
    )
    return RecordRequests(limited, metrics=metrics)


def add_error_handlers(app: FastAPI) -> None:
    """Every answer but 200 in the JSON shape, logged in one line; only a 500 logs its traceback."""

    def refuse(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
        log_refusal(request.method, request.url.path, status, message)
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return refuse(request, error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)  # 404, 405 (with Allow), a form the parser refuses (400)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return refuse(request, error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in error.errors()
        )
        return refuse(request, 422, f"invalid request: {problems}")

    @app.exception_handler(ClientDisconnect)
    async def hung_up(request: Request, _: ClientDisconnect) -> Response:
        # Nobody reads this answer (the server drops it); its status is what the metrics count.
        path = request.url.path
        log.info("%s %s: the client disconnected before sending its whole body", request.method, path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:  # the server's own fault
        log.exception("%s %s failed", request.method, request.url.path)
        message = f"internal error ({type(error).__name__}); the server log has the details."
        return JSONResponse({"error": message, "status": 500}, status_code=500)


def app_from_env() -> ASGIApp:
    """For uvicorn's worker processes (--workers > 1): the settings come in ENV_VAR, as JSON."""
    settings = ServeSettings.from_json(os.environ[ENV_VAR])
    H11WithHeaderDeadline.header_timeout_s = settings.read_timeout_s  # this worker's connections
    return create_app(settings)
