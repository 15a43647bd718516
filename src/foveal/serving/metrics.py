"""Prometheus metrics of one server process, and the ASGI layer that records each request.

foveal_requests_total{path, status}     requests answered, by route and status code (499: the client
                                        hung up before its answer)
foveal_request_seconds{path}            time from the request's arrival to its answer
foveal_requests_in_flight               requests being handled now
foveal_batch_size                       images per model call (dynamic batching at work)
foveal_queue_waiting                    requests waiting for the model now

With --workers N each uvicorn worker is a process of its own, and a scrape reaches one of them; so
then every worker writes its values to files in MULTIPROC_ENV's folder (prometheus_client's
multiprocess mode) and /metrics answers with the sum over the live workers, whichever one is asked.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from foveal.serving.errors import ApiError, log
from foveal.serving.limits import ASGIApp, Message, Receive, Send, send_error

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set before the worker processes start (serving/server.py)
ROUTES = ("/predict", "/explain", "/livez", "/readyz", "/info", "/metrics", "/")  # others count as "other"


class ServerMetrics:
    """The metrics, in a registry of their own (so two apps in one process never share counts);
    `across_processes`: one of several workers, whose /metrics sums every worker's files."""

    def __init__(self, *, across_processes: bool = False) -> None:
        self.across_processes = across_processes
        self.registry = CollectorRegistry()
        live_sum = {"multiprocess_mode": "livesum"}  # a gauge: the live workers' values added up
        self.requests = Counter(
            "foveal_requests",
            "Requests answered, by route and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "foveal_request_seconds",
            "Seconds from a request's arrival to its answer",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "foveal_requests_in_flight", "Requests being handled now", registry=self.registry, **live_sum
        )
        self.batch_size = Histogram(
            "foveal_batch_size",
            "Images per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.waiting = Gauge(
            "foveal_queue_waiting", "Requests waiting for the model", registry=self.registry, **live_sum
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes: this process's metrics, or every worker's summed."""
        if not self.across_processes:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)  # reads the folder that MULTIPROC_ENV names
        return generate_latest(every_worker)


class RecordRequests:
    """ASGI middleware, outside every other layer: each HTTP request's route, status and time."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500  # if the app fails before answering
        started_response = False
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            # FastAPI's 500 handler answers, logs the traceback, then re-raises for the server to log it
            # again; it ends here. Anything that fails before an answer is logged and answered here.
            if not started_response:
                log.exception("%s %s failed", scope["method"], scope["path"])
                await send_error(send, ApiError(500, "internal error; the server log has the details."))
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
