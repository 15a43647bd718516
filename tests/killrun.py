"""Runs `foveal train` with checkpoint writes slowed down, for the kill test.

Usage: python killrun.py atomic|direct ARGS...   (ARGS as for `foveal train`)

Both modes write each checkpoint in small chunks with pauses, so that a SIGKILL at a random moment
often lands mid-write, as it would for a large model. `atomic` writes the chunks through Foveal's
own atomic writer (temp file, fsync, rename); `direct` writes them straight to the final path, the
way a naive `torch.save(state, path)` does, and must be caught leaving corrupt checkpoints.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import foveal.training.state as state_module
from foveal.cli.main import main
from foveal.io import atomic_write

CHUNKS, PAUSE_S = 16, 0.01


def slow_write(data: bytes, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        step = -(-len(data) // CHUNKS)
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(PAUSE_S)


def patched(path, write):  # same signature as foveal.io.atomic_write
    buffer = io.BytesIO()
    write(buffer)  # torch.save into memory, then dribble the bytes to disk
    data = buffer.getvalue()
    if MODE == "atomic":
        return atomic_write(path, lambda temp: slow_write(data, temp))
    slow_write(data, str(path))
    return path


MODE = sys.argv.pop(1)
state_module.atomic_write = patched
sys.argv[0] = "foveal"
main()
