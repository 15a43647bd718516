"""Progress display: a live tqdm bar on a terminal, plain lines when output goes to a file or pipe."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from foveal.messages import say
from foveal.training.clock import SYSTEM_CLOCK, Clock

T = TypeVar("T")

__all__ = ["EpochBar", "say"]


def is_terminal() -> bool:
    return sys.stderr.isatty()


PLAIN_LINE_EVERY_S = 30.0  # without a terminal (a log file, CI), a progress line this often


class EpochBar:
    """Wraps an epoch's batches and shows where it is: on a terminal a live tqdm bar (steps, ETA,
    loss, accuracy, images/s); otherwise a plain line every PLAIN_LINE_EVERY_S seconds, so a log
    shows a long epoch moving; nothing when quiet."""

    def __init__(
        self, batches: Iterable[T], total: int, label: str, quiet: bool = False, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        """label: which epoch, e.g. "epoch 3/20" (loop.epoch_label); clock: the run's (clock.py)."""
        self.live = is_terminal() and not quiet
        self.plain = not quiet and not self.live
        self.batches, self.total, self.label = batches, total, label
        self.bar = None
        self.clock = clock
        self.started = self.last_line = clock.now()
        self.steps = self.images = 0
        if self.live:
            from tqdm import tqdm

            self.bar = tqdm(
                batches,
                total=total,
                desc=label,
                unit="step",
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def __iter__(self) -> Iterator[T]:
        return iter(self.bar if self.bar is not None else self.batches)

    def update(self, loss: float, accuracy: float, images: int) -> None:
        """After a step of `images` images with this loss and top-1 accuracy."""
        self.steps += 1
        self.images += images
        now = self.clock.now()
        rate = self.images / max(now - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.3f}", acc=f"{accuracy:.1%}", img_s=f"{rate:,.0f}", refresh=False
            )
        elif self.plain and now - self.last_line >= PLAIN_LINE_EVERY_S:
            self.last_line = now
            left = (self.total - self.steps) * (now - self.started) / self.steps
            say(
                f"{self.label}: step {self.steps}/{self.total}, loss {loss:.3f}, "
                f"{rate:,.0f} img/s, about {left:.0f} s left in the epoch"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
