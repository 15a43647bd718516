"""Bounds on what a client's body may cost, in the app's outermost layer (ASGI), before a route reads it.

FastAPI parses a multipart body before the route's code runs (fastapi #362) and uvicorn has neither a
body limit nor a body deadline, so these cannot live in a route. For every HTTP request this layer:

* refuses a declared Content-Length above --max-bytes at once (413), and a malformed one (400) that
  got past the HTTP parser;
* refuses a body while --max-uploads others are still arriving (503, Retry-After): each may hold up
  to --max-bytes in memory, so their number is what bounds the memory slow senders can claim;
* counts a body sent without a length (chunked) as it arrives and raises BodyTooLarge (413) as soon
  as it passes the limit: at most one chunk more than the limit is ever held;
* raises BodyTimeout (408) when the whole body has not arrived --read-timeout seconds after the
  request did, so a client that declares 1,000 bytes and sends 10 holds nothing for long.

The two exceptions come out of `receive`, inside whichever route is reading; the app answers them as
it answers any ApiError. Every refusal here closes the connection: its body is left unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from foveal.serving.errors import CLOSE, ApiError, BodyTimeout, BodyTooLarge, error_json, log_refusal

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

RETRY_AFTER_S = 1  # what a 503 asks the client to wait: about one batch's time under load


async def send_error(send: Send, error: ApiError) -> None:
    """A complete JSON error response for `error`: {"error": message, "status": status}."""
    body = error_json(error.status, error.message)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """ASGI middleware: request bodies above `max_bytes` (413), later than `read_timeout_s` (408) or
    beyond `max_uploads` arriving at once (503) are refused without being held."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout_s: float, max_uploads: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.max_uploads = max_uploads
        self.uploading = 0  # bodies arriving now

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            has_body = self._check_headers(scope["headers"])
            if has_body and self.uploading >= self.max_uploads:
                raise ApiError(
                    503,
                    f"the server is receiving {self.max_uploads} images already; retry shortly.",
                    {"Retry-After": str(RETRY_AFTER_S), **CLOSE},
                )
        except ApiError as refusal:
            log_refusal(scope["method"], scope["path"], refusal.status, refusal.message)
            await send_error(send, refusal)
            return
        await self._call_with_body_bounds(scope, receive, send, has_body)

    def _check_headers(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the request has a body; ApiError for a malformed or over-limit Content-Length."""
        declared = [v for k, v in headers if k == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0 or len(declared) > 1:
                    raise ValueError
            except ValueError:
                message = "malformed Content-Length header; expected one byte count."
                raise ApiError(400, message, CLOSE) from None
            if length > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return length > 0
        return any(k == b"transfer-encoding" for k, _ in headers)  # chunked: a body of unknown length

    async def _call_with_body_bounds(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send, has_body: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        received = 0
        arriving = has_body  # counted in self.uploading until its last byte (or the request's end)
        responded = False
        if arriving:
            self.uploading += 1

        def body_done() -> None:
            nonlocal arriving
            if arriving:
                arriving = False
                self.uploading -= 1

        async def bounded_receive() -> Message:
            nonlocal received
            if not arriving:  # after the body: only a disconnect is left to hear of, no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11 on)
                body_done()
                raise BodyTimeout(self.read_timeout_s) from None
            if message["type"] != "http.request":  # http.disconnect: the client hung up
                body_done()
                return message
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                body_done()
                raise BodyTooLarge(self.max_bytes)
            if not message.get("more_body", False):
                body_done()
            return message

        async def watched_send(message: Message) -> None:
            nonlocal responded
            responded = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except ApiError as refusal:  # raised by `receive` where no route answers it (not FastAPI's)
            if responded:
                raise
            log_refusal(scope["method"], scope["path"], refusal.status, refusal.message)
            await send_error(send, refusal)
        finally:
            body_done()
