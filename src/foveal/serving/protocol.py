"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on each request's line and headers.

uvicorn waits for a request's headers as long as the client likes: a client that connects and sends
nothing, or half a header line (slowloris), holds its connection and file descriptor for good, and
enough of them exhaust the server. Here the request line and headers must arrive within
`header_timeout_s` of the connection (or of the previous answer on a kept-alive one), or the
connection is closed. The body has its own deadline in the app's limits layer (limits.py: 408).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class H11WithHeaderDeadline(H11Protocol):
    # Set by `foveal serve` in each server process (the class is named to uvicorn, not built per run,
    # so that worker processes can import it): the --read-timeout.
    header_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._close_if_still_waiting)

    def _close_if_still_waiting(self) -> None:
        # h11 leaves IDLE once a request's headers are complete; a request being answered is not waiting.
        waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()
