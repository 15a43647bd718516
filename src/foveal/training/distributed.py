"""Training on several processes (torchrun): who this process is, the process group, the collectives.

One process per device. torchrun (or SLURM's srun) says which process this is through the
environment; `start` joins the group (NCCL on CUDA, gloo on the CPU) and everything else here is a
no-op in a single process, so the loop calls the same functions either way. Rank 0 is the one
writer of the run folder and the one that decides what depends on a clock (time budget, checkpoint
by minutes); the others follow its decisions, which travel with each step's all_reduce (`agree`).
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from foveal.errors import ConfigError, FovealError
from foveal.runtime import cores_each
from foveal.training.sync_batch_norm import convert

T = TypeVar("T")
TIMEOUT_ENV = "FOVEAL_DIST_TIMEOUT_S"  # how long a collective waits for the other ranks
DEFAULT_TIMEOUT_S = 1800.0  # rank 0 validates and evaluates alone while the others wait at a barrier


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int  # 0 .. size-1, across all nodes
    local_rank: int  # on this node: picks the GPU, cuda:local_rank
    size: int  # processes in all

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World(0, 0, 1)


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The World torchrun (RANK, LOCAL_RANK, WORLD_SIZE) or srun (SLURM_PROCID, SLURM_LOCALID,
    SLURM_NTASKS) describe; SINGLE when neither launched this process."""
    env = os.environ if env is None else env
    names = (
        ("RANK", "LOCAL_RANK", "WORLD_SIZE")
        if "WORLD_SIZE" in env
        else ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")
    )
    if names[2] not in env:
        return SINGLE
    try:
        rank, local_rank, size = (int(env.get(name, "0")) for name in names)
    except ValueError:
        raise FovealError(f"{', '.join(names)} must be integers, got {[env.get(n) for n in names]}") from None
    if not 0 <= rank < size or local_rank < 0:
        raise FovealError(f"{names[0]}={rank} is not a rank of {names[2]}={size} processes")
    return World(rank, local_rank, size)


_world = SINGLE  # the World this process joined, once `start` has run


def world() -> World:
    return _world


def is_main() -> bool:
    """Whether this process writes the run folder and talks to the user (rank 0, or the only one)."""
    return _world.is_main


def start(found: World, device: torch.device) -> None:
    """Join the process group of `found` (nothing to do for one process). NCCL when the run is on
    CUDA (each rank on cuda:LOCAL_RANK, see `rank_device`), gloo on the CPU."""
    global _world
    if found.size == 1:
        return
    if device.type == "cuda":
        if found.local_rank >= torch.cuda.device_count():
            raise FovealError(
                f"local rank {found.local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                "start at most that many processes per node (--nproc-per-node)"
            )
        torch.cuda.set_device(found.local_rank)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise FovealError(
            f"{' and '.join(missing)} not set: launch the processes with torchrun (it sets them), or set "
            "them to the address and a free port of the first node under srun"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    try:
        store, _, _ = next(dist.rendezvous("env://", found.rank, found.size, timeout=timeout))
        # torchrun's workers share its rendezvous store, which outlives a restart (--max-restarts):
        # keys of each attempt of their own, or a restarted rank may read a dead one's address.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"foveal/attempt-{attempt}", store)
        dist.init_process_group(backend, store=store, rank=found.rank, world_size=found.size, timeout=timeout)
    except (RuntimeError, ValueError) as error:  # DistStoreError, NCCL/gloo errors: all RuntimeError
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FovealError(
            f"rank {found.rank} could not join the {found.size} training processes ({backend} at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}): {first[:300]}"
        ) from None
    _world = found


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: its own GPU, cuda:LOCAL_RANK, when the run is on CUDA."""
    if active() and device.type == "cuda":
        return torch.device("cuda", _world.local_rank)
    return device


def threads_per_rank() -> int | None:
    """CPU threads for each of the ranks sharing this node's cores; None (all cores) alone."""
    found = world_from_env()
    if found.size == 1:
        return None
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", found.size))
    return cores_each(per_node)


def stop() -> None:
    """Leave the process group (at the end of a run, or when it failed)."""
    global _world
    if active() and dist.is_initialized():  # never a group this module did not start
        dist.destroy_process_group()
    _world = SINGLE


def active() -> bool:
    return _world.size > 1


def barrier() -> None:
    """Wait until every rank is here (e.g. until rank 0's checkpoint is written)."""
    if active():
        dist.barrier()


def from_main(value: T) -> T:
    """Rank 0's `value` on every rank (a small picklable object: a path, a config, the progress)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(summed: list[float], main_only: list[float]) -> tuple[list[float], list[float]]:
    """One all_reduce per step: the sums over ranks of `summed` (losses, hits, a Ctrl-C flag), and
    rank 0's values of `main_only` (its decisions). float64: image counts stay exact to 2**53."""
    if not active():
        return summed, main_only
    own = main_only if is_main() else [0.0] * len(main_only)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor(summed + own, dtype=torch.float64, device=device)
    dist.all_reduce(values)
    result = values.tolist()
    return result[: len(summed)], result[len(summed) :]


def check_batch(batch_size: int, images: int) -> None:
    """Refuse a global batch the ranks cannot share: each takes an equal slice of every step's batch,
    and at least one image of an epoch's short last batch."""
    size = _world.size
    if size == 1:
        return
    if batch_size < size:
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch, shared by {size} processes, and smaller than "
            f"that; use a batch of at least {size} (a multiple of {size}) or fewer processes."
        )
    if batch_size % size:
        low, high = batch_size - batch_size % size, batch_size + size - batch_size % size
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch and must divide evenly among {size} processes; "
            f"use {low} or {high}."
        )
    last = images % batch_size
    if 0 < last < size:
        raise ConfigError(
            f"each epoch's last batch holds {last} of the {images} training images, fewer than the {size} "
            "processes that share it; choose a --batch-size that leaves at least one image each."
        )


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model DDP trains (gradients averaged over ranks in backward), or `model` itself alone.

    Its batch-norm layers become synchronised (training/sync_batch_norm.py): statistics over the
    global batch, as one process's are, on CUDA and on the CPU. They are converted in place, so
    `model` (what is validated and saved) shares them, their parameters and running statistics.
    """
    if not active():
        return model
    convert(model, device)
    # A parameter with a dimension of size 1 (a position table, 1 x C x h x w) can have channels-last
    # strides that differ from its gradient's there; DDP warns, though the copy is only that one.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
