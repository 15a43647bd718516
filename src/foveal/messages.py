"""Lines for the user while work runs: one place, so every part says things the same way."""

from __future__ import annotations

import sys


def say(message: str, quiet: bool = False) -> None:
    """A line for the user on stderr (stdout stays clean for --json output)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
