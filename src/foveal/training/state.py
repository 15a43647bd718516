"""Training state checkpoints for exact resume.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)` and nothing else: no pickled object from a file can run code.
Written atomically; the newest loadable one is what a resume continues from.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from foveal.errors import FovealError, ModelFileError
from foveal.io import atomic_write

FORMAT = "foveal.state/1"
CHECKPOINT_GLOB = "state-e*-s*.pt"
_NAME = re.compile(r"state-e(\d+)-s(\d+)\.pt$")


@dataclass
class Progress:
    """Where a run stands: the next step to take and everything the loop has accumulated."""

    epoch: int = 1  # epoch in progress (1-based); epochs + 1 once training is complete
    step: int = 0  # steps of `epoch` already taken
    best_top1: float = -1.0
    best_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # results.csv rows of finished epochs
    epoch_loss_sum: float = 0.0  # accumulators of the epoch in progress
    epoch_correct: int = 0
    epoch_skipped: int = 0
    epoch_seconds: float = 0.0
    bad_in_a_row: int = 0  # consecutive non-finite steps
    seen: int = 0  # training images processed, all epochs
    global_step: int = 0  # optimizer steps taken, all epochs
    planned_steps: int = 0  # with a time budget: steps the run will take (0 until measured)
    finished: bool = False  # all epochs done, the budget spent, or stopped early

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        self.epoch_loss_sum, self.epoch_correct, self.epoch_skipped, self.epoch_seconds = 0.0, 0, 0, 0.0


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    keep: int,
    ema: torch.nn.Module | None = None,
    lookahead: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the full training state to folder/state-e{epoch}-s{step}.pt; keep the newest `keep`."""
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "lookahead": lookahead,  # training/lookahead.py's slow weights, once taken
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "progress": asdict(progress),
    }
    path = folder / f"state-e{progress.epoch:04d}-s{progress.step:06d}.pt"
    atomic_write(path, lambda temp: torch.save(state, temp))
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first (temp files of interrupted writes are never listed)."""
    found = [p for p in folder.glob(CHECKPOINT_GLOB) if _NAME.search(p.name)]
    return sorted(found, key=lambda p: tuple(int(g) for g in _NAME.search(p.name).groups()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True; anything else is refused with the reason."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle.UnpicklingError, RuntimeError, EOFError, ...: all mean "refused"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{path} cannot be loaded as a Foveal training state: {first[:300]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a Foveal training state (expected format {FORMAT!r}).")
    return state


def latest_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint in `folder` that loads, and its contents."""
    candidates = list_checkpoints(folder)
    if not candidates:
        raise FovealError(
            f"nothing to resume in {folder.parent}: it has no training checkpoints "
            f"({folder.name}/{CHECKPOINT_GLOB}); start a new run with `foveal train DATA`."
        )
    errors = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except ModelFileError as error:
            errors.append(str(error))
    raise FovealError(f"no loadable checkpoint in {folder}: {'; '.join(errors)}")


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
