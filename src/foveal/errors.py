"""Errors Foveal raises for bad input.

Every error a user can cause is a `FovealError`: the CLI prints its message on one line and exits
non-zero, without a traceback. Messages say what was expected, what was received and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FovealError(Exception):
    """A problem with the user's input (data, model file, option) that they can fix."""


class DataError(FovealError):
    """A data set folder or image that cannot be used."""


class ModelFileError(FovealError):
    """A saved model that is missing, corrupt or not a Foveal model."""


class ConfigError(FovealError, ValueError):
    """An option or configuration value that is out of range or unknown."""


class TrainingInterrupted(FovealError):
    """Ctrl-C stopped training after saving a checkpoint (training/interrupt.py); the message says
    how to continue. The command line exits 130, as for any Ctrl-C."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
