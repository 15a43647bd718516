"""Lines for the user while work runs: one place, so every part says things the same way."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Set by `quieted`: deep helpers (decoding) stay silent inside a quiet command without a `quiet`
# argument threaded through every call between them.
_QUIET: ContextVar[bool] = ContextVar("foveal_quiet", default=False)


def say(message: str, quiet: bool = False) -> None:
    """A line for the user on stderr (stdout stays clean for --json output)."""
    if not (quiet or _QUIET.get()):
        print(message, file=sys.stderr, flush=True)


@contextmanager
def quieted(quiet: bool) -> Iterator[None]:
    """Within the block, `say` is silent when `quiet` (or an outer block is)."""
    token = _QUIET.set(quiet or _QUIET.get())
    try:
        yield
    finally:
        _QUIET.reset(token)


def counted(count: int, noun: str) -> str:
    """'1 epoch', '2 epochs', '12,000 images': a count with its noun in the right number."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
