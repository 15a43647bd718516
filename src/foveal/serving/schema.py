"""The server's OpenAPI contract: what each route takes and every answer it can give, with its shape.

The routes read their image themselves (the limits layer and the form's own bounds come first), so
FastAPI cannot infer the request body; it is declared here, with the answers' models, so that a
generated client or a fuzzer (schemathesis, tests/test_serve_fuzz.py) can drive the API from
/openapi.json alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorAnswer(BaseModel):
    """Every answer other than 200."""

    error: str = Field(description="what went wrong and what to do")
    status: int = Field(description="the HTTP status, repeated")


class Score(BaseModel):
    label: str
    score: float = Field(description="the class's probability")


class PredictAnswer(BaseModel):
    model: str = Field(description="preset@sha256 prefix of the served weights")
    label: str = Field(description="the top label, or 'unknown' when the image is unlike every class")
    unknown: bool
    familiarity: float | None = Field(description="open-set score; null without a threshold or reject=false")
    predictions: list[Score] = Field(description="the top-k labels, most probable first")
    time_ms: float


class ExplainAnswer(PredictAnswer):
    method: str = Field(description="the explanation method used")
    target: str = Field(description="the class the map explains")
    grid: list[int] = Field(description="the map's token grid (h, w)")
    map: list[list[float]] = Field(description="the map on its token grid, (h, w)")
    overlay_png: str = Field(description="the map over the image as seen by the model, PNG in base64")


class Status(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready, loading or failed")
    model: str | None = None
    error: str | None = None


IMAGE_TYPES = ("image/*", "application/octet-stream")  # a raw body of one of these is an image file
_BINARY = {"type": "string", "format": "binary"}

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One image file (JPEG, PNG, WebP, BMP, GIF, TIFF, PPM), as a form's file field or "
        "as the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]},
                "encoding": {"file": {"contentType": "image/*"}},
            },
            **{media_type: {"schema": _BINARY} for media_type in IMAGE_TYPES},
        },
    }
}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorAnswer, "description": description}


NOT_READY = {503: _error("the model is still loading, or failed to load (Retry-After)")}
IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: _error("a malformed request: a broken form, a malformed Content-Length"),
    408: _error("the body did not arrive within --read-timeout"),
    413: _error("the body is over --max-bytes"),
    415: _error("the body is not an image type"),
    422: _error("the image does not decode, is over --max-pixels or too thin, or a parameter is invalid"),
    503: _error("busy (--max-queue waiting, --max-uploads arriving) or not ready; see Retry-After"),
    504: _error("no answer within --timeout"),
}
