"""Progress display: a live tqdm bar on a terminal, plain lines when output goes to a file or pipe."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def is_terminal() -> bool:
    return sys.stderr.isatty()


class EpochBar:
    """Wraps an epoch's batches; shows loss and accuracy live (tqdm) or nothing until `close`."""

    def __init__(
        self, batches: Iterable[T], total: int, epoch: int, epochs: int, quiet: bool = False
    ) -> None:
        self.live = is_terminal() and not quiet
        self.batches = batches
        self.bar = None
        if self.live:
            from tqdm import tqdm

            self.bar = tqdm(
                batches,
                total=total,
                desc=f"epoch {epoch}/{epochs}",
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def __iter__(self) -> Iterator[T]:
        return iter(self.bar if self.bar is not None else self.batches)

    def update(self, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.1%}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def say(message: str, quiet: bool = False) -> None:
    """A line for the user on stderr (stdout stays clean for --json output)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
