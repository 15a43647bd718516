"""Ctrl-C during training: finish the step in hand, save a checkpoint, say how to resume.

A KeyboardInterrupt raised in the middle of `optimizer.step()` would leave weights half updated, and
the last checkpoint may be minutes old. So while an epoch's steps run, the first SIGINT only sets a
flag (the loop checks it after each step, checkpoints and raises TrainingInterrupted, which says
the exact `--resume` command); a second SIGINT stops at once, as Python's default would.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from foveal.errors import TrainingInterrupted

__all__ = ["DeferredInterrupt", "TrainingInterrupted"]


class DeferredInterrupt:
    """Context manager: while inside, the first SIGINT sets `requested` instead of raising."""

    def __init__(self, quiet: bool = False) -> None:
        self.requested = False
        self.quiet = quiet
        self._previous = None

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            print(
                "\nstopping after this step to save a checkpoint (Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
