"""The request-body limit, in the app's outermost layer (ASGI), before anything reads the body.

FastAPI parses a multipart body before the route's code runs (fastapi #362) and uvicorn has no body
limit, so the limit cannot live in a route. This layer refuses a declared Content-Length above the
limit at once (413) and a malformed one (400); for a body sent without a length (chunked), it counts
the bytes as the app receives them and answers 413 as soon as they pass the limit: at most one more
chunk than the limit is ever held.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised from `receive` when a chunked body passes the limit; the layer turns it into a 413."""


async def send_json_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON error response: {"error": message, "status": status}."""
    body = json.dumps({"error": message, "status": status}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: request bodies above `max_bytes` get 413 without being read into memory."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"the request body is larger than this server's limit of {self.max_bytes:,} bytes; "
            "send a smaller image (or start the server with a larger --max-bytes)."
        )

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0 or len(declared) > 1:
                    raise ValueError
            except ValueError:
                await send_json_error(send, 400, "malformed Content-Length header; expected one byte count.")
                return
            if length > self.max_bytes:
                await send_json_error(send, 413, self._too_large())
                return
        received = 0
        exceeded = False
        responded = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body has passed the limit, the app's own answer (FastAPI turns the error into a
            # 400 "error parsing the body") is replaced by the 413.
            nonlocal responded
            if exceeded:
                if not responded:
                    responded = True
                    await send_json_error(send, 413, self._too_large())
                return
            responded = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not responded:
            await send_json_error(send, 413, self._too_large())
