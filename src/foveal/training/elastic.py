"""After torchrun restarts the processes (`--max-restarts`), continue the run they were writing.

torchrun gives every launch an id, TORCHELASTIC_RUN_ID (a fresh one per `--standalone` launch, the
`--rdzv-id` otherwise), kept across its restarts, and counts the restarts in
TORCHELASTIC_RESTART_COUNT. A new run records the id in its config.json ("launch_id"); a restarted
launch finds the unfinished run folder with its id and resumes it from its newest checkpoint, as
`foveal train --resume` would. A folder that has no checkpoint yet is left, and the run starts over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from foveal.config import TrainConfig
from foveal.training.state import list_checkpoints

RUN_ID_ENV, RESTART_ENV = "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"


def launch_id() -> str | None:
    """The id of the torchrun launch this process belongs to, None outside torchrun."""
    return os.environ.get(RUN_ID_ENV)


def restarted() -> bool:
    """Whether torchrun has restarted this launch's processes at least once."""
    return launch_id() is not None and int(os.environ.get(RESTART_ENV, "0") or 0) > 0


def run_to_continue(config: TrainConfig) -> Path | None:
    """The newest unfinished run folder among out/name, out/name2, ... that this launch started and
    checkpointed, or None."""
    out, found = Path(config.run.out), []
    for folder in out.glob(f"{config.run.name}*"):
        if (folder / "metrics.json").is_file() or not list_checkpoints(folder / "checkpoints"):
            continue  # finished, or killed before its first checkpoint
        try:
            record = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("launch_id") == launch_id():
            found.append(folder)
    return max(found, key=lambda folder: folder.stat().st_mtime, default=None)
