"""The server's answers other than 200: one JSON shape, one log line each.

Every refusal is `{"error": "what went wrong and what to do", "status": N}` with the status that says
whose fault it is (docs/serving.md lists them). A refusal is the client's doing, so it is logged in
one line, without a traceback; only a real fault of the server (a 500) logs a traceback.
"""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("foveal.serve")

CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection before the answer": never sent
CLOSE = {"Connection": "close"}  # after a refusal that leaves the body unread, the connection ends


class ApiError(Exception):
    """An answer other than 200, with the words that say what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class BodyTooLarge(ApiError):
    """Raised from the limits layer's `receive` when a chunked body passes --max-bytes."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than this server's limit of {max_bytes:,} bytes; "
            "send a smaller image (or start the server with a larger --max-bytes).",
            CLOSE,
        )


class BodyTimeout(ApiError):
    """Raised from the limits layer's `receive` when the body has not arrived within --read-timeout."""

    def __init__(self, read_timeout_s: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {read_timeout_s:g} s; send it again on a faster "
            "connection (or start the server with a larger --read-timeout).",
            CLOSE,
        )


def error_json(status: int, message: str) -> bytes:
    """The body of every refusal."""
    return json.dumps({"error": message, "status": status}).encode()


def log_refusal(method: str, path: str, status: int, message: str) -> None:
    """One line for an expected refusal (4xx, 503, 504), e.g. 'POST /predict 415: text/plain is ...'."""
    log.info("%s %s %d: %s", method, path, status, message)


def show_log() -> None:
    """Send the server's lines (a model ready, a refusal, a failure) to stderr with their time, once
    per process: uvicorn configures only its own loggers."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
