"""Helpers of the tracking tests: read a run's TensorBoard events, crash a run mid-epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foveal.training import loop

STEPS_PER_EPOCH = 5  # 33 training images of the class_folder fixture in batches of 8


def events(run: Path) -> Any:
    """TensorBoard's EventAccumulator over RUN/tensorboard, loaded, nothing sampled away."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def steps(accumulator: Any, tag: str) -> list[int]:
    """The steps of scalar `tag`, in the order TensorBoard shows them."""
    return [event.step for event in accumulator.Scalars(tag)]


def crash_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """The loop's `train_step` raises on its `call`-th call, as a process dying mid-epoch would stop."""
    real, calls = loop.train_step, [0]

    def step(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
