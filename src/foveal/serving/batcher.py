"""Dynamic batching: requests that arrive together run through the model as one batch.

Each request puts its decoded image (3, S, S) uint8 in a queue and awaits its answer. One task takes
every image waiting once the model is free (up to `max_batch`) and runs them as one batch on the
model thread, off the event loop; it waits for more only until the first of them has waited
`max_wait_s` since it arrived, so images that queued while the model was busy go at once. The model
thread is a single thread, so the model never runs twice at once and its thread count, set once,
holds. With max_batch=1 it serves one request at a time (batching off), the baseline the load test
compares with.

Past `max_queue` waiting requests, `submit` refuses at once (QueueFull: the server answers 503 with
Retry-After) rather than letting the queue, and every client's latency, grow without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from foveal.serving.metrics import ServerMetrics

T = TypeVar("T")


class QueueFull(Exception):
    """More requests are waiting than the server accepts."""


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        metrics: ServerMetrics,
    ) -> None:
        """run_batch: uint8 images (B, 3, S, S) -> one result row per image (B, ...)."""
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foveal-model")
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future, float]] | None = None
        self._worker: asyncio.Task | None = None
        self._waiting = 0  # queued images plus exclusive calls waiting for the model thread

    def start(self) -> None:
        """Start gathering (inside the running event loop)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._gather_and_run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self.model_thread.shutdown(wait=True)

    async def submit(self, image: torch.Tensor) -> torch.Tensor:
        """The model's row for one uint8 image (3, S, S), computed in a batch with whatever else waits."""
        self._admit()
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._queue.put_nowait((image, future, loop.time()))
        return await future

    async def run_exclusive(self, call: Callable[[], T]) -> T:
        """Run `call` (an explanation, say) alone on the model thread, queued like a request."""
        self._admit()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.model_thread, call)
        finally:
            self._leave(1)

    def _admit(self) -> None:
        if self._waiting >= self.max_queue:
            raise QueueFull
        self._waiting += 1
        self.metrics.waiting.set(self._waiting)

    def _leave(self, count: int) -> None:
        self._waiting -= count
        self.metrics.waiting.set(self._waiting)

    async def _gather_and_run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = batch[0][2] + self.max_wait_s  # the first image's arrival + the longest wait
            while len(batch) < self.max_batch:
                try:  # what is already queued joins at once; then wait until the deadline
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:  # (TimeoutError itself from Python 3.11 on)
                    break
            self._leave(len(batch))
            live = [(image, future) for image, future, _ in batch if not future.done()]  # timed out: gone
            if live:
                await self._run(live)

    async def _run(self, live: list[tuple[torch.Tensor, asyncio.Future]]) -> None:
        images = torch.stack([image for image, _ in live])  # (B, 3, S, S)
        self.metrics.batch_size.observe(len(live))
        try:
            rows: Any = await asyncio.get_running_loop().run_in_executor(
                self.model_thread, self.run_batch, images
            )
        except Exception as error:  # the model failed: every request of the batch hears of it
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), row in zip(live, rows):
            if not future.done():
                future.set_result(row)
