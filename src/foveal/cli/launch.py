"""`foveal train --devices N`: start torchrun for the user, N training processes on this machine.

The processes run `foveal train` with the same settings (the batch size is the global batch, shared
by all; training/distributed.py). torchrun's agent runs in this process, so that a failed rank ends
in one line (its own error line is printed above by the rank) instead of torchrun's traceback.
"""

from __future__ import annotations

import os
from typing import Any

from foveal.cli.options import option_flag
from foveal.config import config_fields
from foveal.errors import FovealError


def train_arguments(
    data: str | None, resume: str | None, config: str | None, quiet: bool, chosen: dict[str, Any]
) -> list[str]:
    """The `foveal train` arguments that give each process the settings this command was given."""
    flags = {f.flat: (option_flag(f), f.type) for f in config_fields()}
    args = [data] if data is not None else []
    if resume is not None:
        args += ["--resume", resume]
    if config is not None:
        args += ["--config", config]
    for name, value in chosen.items():
        flag, _ = flags[name]
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, (list, tuple)):  # a repeatable option (--log): once per value
            args += [item for v in value for item in (flag, str(v))]
        else:
            args += [flag, str(value)]
    return [*args, "--quiet"] if quiet else args


def launch(devices: int, args: list[str]) -> None:
    """Run `foveal train ARGS` on `devices` processes of this machine (one per GPU on CUDA) and wait."""
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from foveal.runtime import cores_each  # imports torch: only when launching

    if devices < 1:
        raise FovealError(f"--devices must be >= 1, got {devices}")
    gpus = torch.cuda.device_count()
    if gpus and devices > gpus:
        raise FovealError(f"--devices {devices} asked for, but this machine has {gpus} GPUs")
    # Unset, torchrun sets 1 and prints a four-line warning; each rank takes its share of the cores
    # (training/distributed.py threads_per_rank), as its OpenMP threads too.
    os.environ.setdefault("OMP_NUM_THREADS", str(cores_each(devices)))
    # "--": torchrun's parser would take an option of ours that begins one of its own (--log: its
    # --log-dir) for an ambiguous abbreviation of it.
    launcher = ["--standalone", f"--nproc-per-node={devices}", "-m", "--", "foveal", "train", *args]
    try:
        run(get_args_parser().parse_args(launcher))
    except SignalException:  # Ctrl-C: the ranks got it too, saved a checkpoint and said how to resume
        raise KeyboardInterrupt from None
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        raise FovealError(
            f"training stopped: rank {rank} of {devices} exited with code {failure.exitcode} (its error is "
            "above); the other processes were stopped"
        ) from None
