"""Work in chunks that stops before a time: how a report's explaining sections keep a `--time` budget
when the machine turns slower than the plan measured it (another job starts, the CPU throttles).

The plan (report_plan.py) sizes each section from the run's measured speed; this is the guard under
it: each chunk is timed, and the next starts only if a chunk as long would still end in time.

    limit = TimeLimit.after(120.0)                  # seconds from now; TimeLimit(None): no limit
    for part in limit.chunks(len(images), 8):       # slices of range(len(images))
        work(images[part])                          # the chunk after it runs only if it fits
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class TimeLimit:
    deadline: float | None = None  # a time.perf_counter() value; None: no limit

    @classmethod
    def after(cls, seconds: float | None) -> TimeLimit:
        """The limit `seconds` from now (None: no limit)."""
        return cls(None if seconds is None else time.perf_counter() + seconds)

    def seconds_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.perf_counter()

    def chunks(self, total: int, size: int) -> Iterator[slice]:
        """Slices of range(`total`), `size` long (the last may be shorter), while the next one, as long
        as the last one took, still ends before the deadline; none when it has passed already."""
        last_seconds = 0.0
        for start in range(0, total, size):
            if self.seconds_left() < last_seconds or self.seconds_left() <= 0:
                return
            started = time.perf_counter()
            yield slice(start, min(start + size, total))
            last_seconds = time.perf_counter() - started


NO_LIMIT = TimeLimit()
