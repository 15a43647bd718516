"""TensorBoard: the run's figures as event files in RUN/tensorboard (`tensorboard --logdir RUN`).

Per step train/loss and train/lr, per epoch the results.csv row (val/top1, train/images_per_second,
...), at the end the final scores, the confusion matrix and a sheet of attention overlays as images,
and the resolved config as text. A resumed run writes a new event file that purges what the run
had written past its checkpoint's step, so that TensorBoard shows each step once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from foveal.tracking.interface import (
    RunEnd,
    RunStart,
    Status,
    Tracker,
    TrackingUnavailable,
    epoch_figures,
)

FOLDER = "tensorboard"  # inside the run folder


def summary_writer_class() -> type:
    """torch's SummaryWriter, or TrackingUnavailable naming the extra to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrackingUnavailable(
            "--log tensorboard needs the tensorboard package; install it with "
            "`pip install 'foveal[tensorboard]'`."
        ) from None
    return SummaryWriter


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard."""

    name = "tensorboard"
    wants_pictures = True

    def __init__(self) -> None:
        self.writer_class = summary_writer_class()  # checked before the run folder is made
        self.writer: Any = None

    def start(self, run: RunStart) -> None:
        # purge_step: events at and past it, from the attempt that crashed, are hidden from
        # TensorBoard; the resumed run writes those steps again.
        purge = None if run.resumed_at is None else run.resumed_at + 1
        self.writer = self.writer_class(str(run.run_dir / FOLDER), purge_step=purge)
        if run.resumed_at is None:
            # Markdown: a code block is indented by four spaces.
            text = "    " + json.dumps(run.record, indent=2).replace("\n", "\n    ")
            self.writer.add_text("config", text, 0)
            self.writer.add_text("tags", "\n\n".join(f"**{k}**: {v}" for k, v in run.tags.items()), 0)

    def step(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def epoch(self, step: int, rows: list[dict[str, Any]]) -> None:
        for key, value in epoch_figures(rows[-1]).items():
            self.writer.add_scalar(key, value, step)

    def checkpointed(self, step: int) -> None:
        self.writer.flush()  # on disk with the checkpoint: a crash loses nothing a resume keeps

    def finish(self, end: RunEnd) -> None:
        for key, value in end.metrics.items():
            self.writer.add_scalar(key, value, end.step)
        for name, path in end.pictures.items():
            self.writer.add_image(f"final/{name}", read_png(path), end.step, dataformats="HWC")

    def close(self, status: Status) -> None:
        if self.writer is not None:
            self.writer.close()


def read_png(path: Path) -> np.ndarray:
    """A PNG as uint8 (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
