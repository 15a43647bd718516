"""The loggers of one run behind one object: the loop calls it, it calls each logger, and a logger
that fails mid-run is dropped with one warning line while the run goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from foveal.messages import say
from foveal.tracking.interface import RunEnd, RunStart, Status, Tracker, TrackingFailed


class Trackers:
    """Every logger of the run (results.csv first); on ranks other than 0, none."""

    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None] = say) -> None:
        self.trackers, self.warn = list(trackers), warn

    @property
    def wants_pictures(self) -> bool:
        """Whether any logger records the end's confusion matrix and attention overlays."""
        return any(tracker.wants_pictures for tracker in self.trackers)

    def start(self, run: RunStart) -> None:
        self._each("start", run)

    def step(self, step: int, values: dict[str, float]) -> None:
        self._each("step", step, values)

    def epoch(self, step: int, rows: list[dict[str, Any]]) -> None:
        self._each("epoch", step, rows)

    def checkpointed(self, step: int) -> None:
        self._each("checkpointed", step)

    def finish(self, end: RunEnd) -> None:
        self._each("finish", end)

    def close(self, status: Status) -> None:
        self._each("close", status)

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except TrackingFailed as error:
                self.trackers.remove(tracker)
                self.warn(f"warning: {tracker.name} stopped recording this run ({error}); training goes on")
