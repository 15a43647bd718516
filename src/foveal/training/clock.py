"""The one clock a run reads its time from: the budget, the deadline, checkpoints by minutes, progress.

Passed explicitly (`train(clock=...)`, the trainer's `clock`), never patched in: a test hands the run
a FakeClock that moves only by the costs it charges (a step, a validation), so that a budget's plan
is exact, whatever else the machine is doing.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds, monotonic: only differences between two `now()` readings mean anything."""

    def now(self) -> float: ...


class SystemClock:
    """The machine's clock: time.perf_counter (runtime.process_start reads the same one)."""

    def now(self) -> float:
        return time.perf_counter()


class FakeClock:
    """A clock that stands still until told to move: `advance(seconds)` charges a cost."""

    def __init__(self, start: float = 0.0) -> None:
        self.seconds = start

    def now(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock never goes back: advance({seconds})")
        self.seconds += seconds


SYSTEM_CLOCK = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]
