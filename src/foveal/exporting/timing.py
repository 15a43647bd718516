"""Timing several ways of running a model side by side, so that they are compared fairly.

Each round calls every contender once, each round starting with a different one (the order is
rotated): a burst of load from another process, a CPU clocking down or a cache warmed by the
previous call then falls on all of them alike, instead of on whichever happened to run at the time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

PERCENTILES = (50, 90, 99)
# A pause after each timed call, not timed, so that the worker threads of the backend that just ran
# go idle before the next one starts: OpenMP (PyTorch) and onnxruntime threads spin-wait after a
# call, and two thread pools contending for the same cores slow each other down by far more than
# the difference being measured. Measured on the 2-core reference machine, tiny model, batch 1:
# eager p50 1.4-1.5 ms alone; interleaved with onnxruntime 9-150 ms back to back, 1.7-2.0 ms with
# this pause.
SETTLE_SECONDS = 0.002


def time_interleaved(
    runs: dict[str, Callable[[int], object]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds each of `runs` took in each of `rounds` timed rounds, after `warmup` untimed ones.

    Round r calls every run with r (so that it can pick its r-th input), in the order of `runs`
    rotated by r, pausing SETTLE_SECONDS after each call.
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            runs[name](r)
            elapsed = time.perf_counter() - started
            if r >= warmup:
                times[name].append(elapsed * 1e3)
            time.sleep(SETTLE_SECONDS)
    return times


def summarize(milliseconds: list[float]) -> dict[str, float | int]:
    """p50/p90/p99 and mean of a list of times (ms, rounded to the microsecond), and their count."""
    values = np.percentile(np.asarray(milliseconds), PERCENTILES)  # linear interpolation between ranks
    summary: dict[str, float | int] = {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values)}
    summary["mean"] = round(statistics.fmean(milliseconds), 3)
    summary["samples"] = len(milliseconds)
    return summary
