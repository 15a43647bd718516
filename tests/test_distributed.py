"""Training on several processes (torchrun, gloo on the CPU): the guarantees of docs/distributed.md.

Real torchrun processes on loopback, one thread each, an explicit collective timeout: nothing here
stands in for torch.distributed. The batch slicing is checked in this process; every test that
launches processes is `slow` (10 to 60 s: each launch pays torch's start-up once per rank); the
default suite checks the slicing and a rank started without a rendezvous, in this process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foveal.data.imageset import ImageSet
from foveal.errors import FovealError
from foveal.training import distributed
from foveal.training.batches import Augmentation, EpochBatches, rank_slice
from foveal.training.state import list_checkpoints

# The equivalence tolerance of one process against two ranks at the same global batch: the two sum
# each gradient in another order (two half-batch means averaged against one mean) and batch norm's
# statistics come from float64 sums instead of one pass, so the weights differ by float32 rounding,
# grown over the steps. Measured: at most 5e-7 after 12 SGD steps (hybrid-nano, below).
TOLERANCE = 1e-5
LAUNCH_TIMEOUT_S = 240  # a hung collective fails the test; FOVEAL_DIST_TIMEOUT_S ends the ranks first


def options(out: Path, name: str, **changes: object) -> list[str]:
    """`foveal train` options of a run that takes seconds: hybrid-nano has batch norm (synchronised
    across ranks) and no dropout, SGD and fp32 keep float rounding the only difference between one
    process and two. 33 training images in batches of 6: the last batch of each epoch has 3 images,
    which two ranks share unevenly (1 and 2)."""
    settings = {
        "model": "hybrid-nano",
        "optimizer": "sgd",
        "precision": "fp32",
        "epochs": 2,
        "batch_size": 6,
        "img_size": 16,
        "threads": 1,
        "out": str(out),
        "name": name,
        **changes,
    }
    args = []
    for key, value in settings.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, "--no-report", "--quiet"]


def environment() -> dict[str, str]:
    src = str(Path(__file__).parents[1] / "src")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FOVEAL_DIST_TIMEOUT_S": "60",
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }


def torchrun_command(nproc: int, train_args: list[str], *launcher: str) -> list[str]:
    """`torchrun --standalone` (a free port of its own) starting `foveal train` on `nproc` ranks."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *launcher,
        "-m",
        "foveal",
        "train",
        *train_args,
    ]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=environment(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "weights" / "last.safetensors"))


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# --- the batches: in this process ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "augmentation", [Augmentation(padding=2, flip=True), Augmentation(2, True, mixup_alpha=1)]
)
def test_ranks_slices_make_up_the_one_process_batch(augmentation: Augmentation) -> None:
    """Whatever the rank count, step t trains on the same images with the same augmentation: the
    ranks' slices, joined, are the batch one process makes (the short last batch too)."""
    images = ImageSet(
        torch.randint(0, 255, (33, 3, 8, 8), dtype=torch.uint8), torch.arange(33) % 3, ["a", "b", "c"]
    )
    whole = EpochBatches(images, epoch=2, seed=7, batch_size=6, augmentation=augmentation)
    for world_size in (2, 3):
        parts = [EpochBatches(images, 2, 7, 6, augmentation, part=(r, world_size)) for r in range(world_size)]
        for step in range(len(whole)):
            expected_images, expected_targets = whole[step]
            slices = [part[step] for part in parts]
            assert torch.equal(torch.cat([s[0] for s in slices]), expected_images)
            assert torch.equal(torch.cat([s[1] for s in slices]), expected_targets)
    assert [rank_slice(r, 2, 3) for r in range(2)] == [slice(0, 1), slice(1, 3)]


def test_ranks_come_from_torchrun_or_slurm() -> None:
    assert distributed.world_from_env({}) == distributed.SINGLE
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "SLURM_NTASKS": "9"}
    assert distributed.world_from_env(torchrun) == distributed.World(3, 1, 4)
    slurm = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8"}
    assert distributed.world_from_env(slurm) == distributed.World(5, 1, 8)
    with pytest.raises(FovealError, match="RANK=4 is not a rank of WORLD_SIZE=4 processes"):
        distributed.world_from_env({"RANK": "4", "LOCAL_RANK": "0", "WORLD_SIZE": "4"})


@pytest.mark.parametrize(
    ("batch_size", "images", "message"),
    [
        (2, 100, "--batch-size 2 is the global batch, shared by 4 processes, and smaller than that"),
        (
            10,
            100,
            "--batch-size 10 is the global batch and must divide evenly among 4 processes; use 8 or 12",
        ),
        (8, 98, "each epoch's last batch holds 2 of the 98 training images, fewer than the 4 processes"),
    ],
)
def test_a_batch_four_ranks_cannot_share_is_refused(
    batch_size: int, images: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distributed, "_world", distributed.World(0, 0, 4))
    with pytest.raises(FovealError, match=message):
        distributed.check_batch(batch_size, images)
    distributed.check_batch(8, 100)  # 12 batches of 8, the last of 4: one image each


# --- processes -----------------------------------------------------------------------------------------


def test_ranks_without_a_rendezvous_are_told_how_to_launch(
    class_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank started by hand (WORLD_SIZE set, no MASTER_ADDR / MASTER_PORT): one line, exit 1."""
    from clirun import foveal_cli

    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    result = foveal_cli("train", str(class_folder), *options(tmp_path, "alone"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: MASTER_ADDR and MASTER_PORT not set: launch the processes with torchrun (it sets them), "
        "or set them to the address and a free port of the first node under srun"
    ]


@pytest.mark.slow
def test_a_batch_the_ranks_cannot_share_is_refused_in_one_line(class_folder: Path, tmp_path: Path) -> None:
    result = run(torchrun_command(2, [str(class_folder), *options(tmp_path, "odd", batch_size=5)]))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0
    # Each rank that gets to say it says it on a line of its own (torchrun may stop one first).
    assert errors and set(errors) == {
        "error: --batch-size 5 is the global batch and must divide evenly among 2 processes; use 4 or 6."
    }
    assert "[rank0]" not in result.stderr and "[rank1]" not in result.stderr  # no worker traceback
    assert not (tmp_path / "odd").exists()  # refused before a run folder is made


@pytest.mark.slow
def test_two_ranks_train_the_weights_one_process_does(class_folder: Path, tmp_path: Path) -> None:
    from clirun import foveal_cli

    one = foveal_cli("train", str(class_folder), *options(tmp_path, "one"))
    assert one.returncode == 0, one.stderr
    two = run(torchrun_command(2, [str(class_folder), *options(tmp_path, "two")]))
    assert two.returncode == 0, two.stderr[-3000:]
    difference = largest_difference(weights(tmp_path / "one"), weights(tmp_path / "two"))
    print(f"\none process against two ranks, 12 steps: largest weight difference {difference:.3g}")
    assert difference <= TOLERANCE
    # Validation is rank 0's on every image: one process's figures.
    assert (tmp_path / "one" / "results.csv").read_text().splitlines()[1].split(",")[3:6] == (
        (tmp_path / "two" / "results.csv").read_text().splitlines()[1].split(",")[3:6]
    )


def wait_until_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Return once none of `pids` is a live process (a killed zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {pids} still alive {timeout} s after SIGKILL")


def rank_processes(launcher: int) -> dict[int, int]:
    """{rank: pid} of the worker processes a torchrun process `launcher` started."""
    found = {}
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(child)
    return found


def wait_for_checkpoint(run_dir: Path, epoch: int, step: int, process: subprocess.Popen) -> None:
    """Until `run_dir` has a checkpoint at or past (epoch, step) mid-epoch."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        names = [p.name for p in list_checkpoints(run_dir / "checkpoints")]
        if any(
            name >= f"state-e{epoch:04d}-s{step:06d}.pt" and not name.endswith("s000000.pt") for name in names
        ):
            return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint at epoch {epoch} step {step} before the run ended")


@pytest.mark.slow
def test_a_killed_rank_restarts_the_job_which_ends_bit_identical(class_folder: Path, tmp_path: Path) -> None:
    """SIGKILL rank 1 mid-epoch under --max-restarts 1: torchrun restarts both ranks, rank 0 finds the
    run folder of this launch and resumes it from its newest checkpoint; the weights are the
    uninterrupted run's, bit for bit."""
    train = options(tmp_path, "killed", epochs=3, checkpoint_every_steps=1)
    reference = run(torchrun_command(2, [str(class_folder), *options(tmp_path, "reference", epochs=3)]))
    assert reference.returncode == 0, reference.stderr[-3000:]
    launcher = subprocess.Popen(
        torchrun_command(2, [str(class_folder), *train], "--max-restarts=1"),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(tmp_path / "killed", 2, 2, launcher)
        os.kill(rank_processes(launcher.pid)[1], signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=LAUNCH_TIMEOUT_S)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, "\n".join(line for line in stderr.splitlines() if "rank" not in line[:8])
    events = (tmp_path / "killed" / "events.log").read_text()
    assert "resumed from state-e0002" in events
    assert not (tmp_path / "killed2").exists()  # the restart continued the run, not a new one
    killed, uninterrupted = weights(tmp_path / "killed"), weights(tmp_path / "reference")
    assert all(torch.equal(killed[k], uninterrupted[k]) for k in uninterrupted)


@pytest.mark.slow
def test_a_two_rank_run_resumes_on_one_process(class_folder: Path, tmp_path: Path) -> None:
    """Stopped (every process killed) mid-epoch, a 2-rank run resumes in one process: the same global
    batches in the same order (the slices test above), the same schedule; weights within TOLERANCE."""
    from clirun import foveal_cli

    train = options(tmp_path, "moved", epochs=3, checkpoint_every_steps=1)
    reference = run(torchrun_command(2, [str(class_folder), *options(tmp_path, "reference", epochs=3)]))
    assert reference.returncode == 0, reference.stderr[-3000:]
    launcher = subprocess.Popen(
        torchrun_command(2, [str(class_folder), *train]),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole, as a lost machine would be
    )
    try:
        wait_for_checkpoint(tmp_path / "moved", 2, 2, launcher)
    finally:
        ranks = list(rank_processes(launcher.pid).values())
        os.killpg(launcher.pid, signal.SIGKILL)
        for pid in ranks:  # a rank that left the group would finish the run after the kill
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.wait()
        wait_until_gone(ranks)
    assert not (tmp_path / "moved" / "metrics.json").exists()
    resumed = foveal_cli("train", "--resume", str(tmp_path / "moved"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from state-e0002" in (tmp_path / "moved" / "events.log").read_text()
    rows = (tmp_path / "moved" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # the header and three epochs, as the uninterrupted run
    difference = largest_difference(weights(tmp_path / "moved"), weights(tmp_path / "reference"))
    print(f"\n2 ranks resumed on 1 process: largest weight difference {difference:.3g}")
    assert difference <= TOLERANCE


@pytest.mark.slow
def test_a_time_budgeted_two_rank_run_ends_inside_its_budget(class_folder: Path, tmp_path: Path) -> None:
    budget = 25.0
    started = time.perf_counter()
    result = run(
        torchrun_command(2, [str(class_folder), *options(tmp_path, "budget", time="25s", epochs=None)])
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "budget" / "metrics.json").is_file()
    # The budget counts from each rank's start; torchrun's own start-up and teardown come on top.
    assert seconds < budget + 10, f"2 ranks took {seconds:.1f} s for a {budget:g} s budget"
    assert seconds > budget * 0.6  # it used the budget, not stopped at once


@pytest.mark.slow
def test_devices_starts_the_ranks_itself(class_folder: Path, tmp_path: Path) -> None:
    """`foveal train --devices 2` runs torchrun's agent in the command's process; a rank's failure
    ends in one line."""
    from clirun import foveal_cli, foveal_cli_subprocess

    env = {name: environment()[name] for name in ("OMP_NUM_THREADS", "FOVEAL_DIST_TIMEOUT_S", "PYTHONPATH")}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        result = foveal_cli("train", str(class_folder), "--devices", "2", *options(tmp_path, "launched"))
        # In a process of its own: the ranks write to the real stderr, which foveal_cli cannot capture.
        refused = foveal_cli_subprocess(
            "train", str(class_folder), "--devices", "2", *options(tmp_path, "odd", batch_size=5)
        )
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"processes": 2' in (tmp_path / "launched" / "config.json").read_text()
    assert (tmp_path / "launched" / "metrics.json").is_file()
    assert refused.returncode == 1
    assert "must divide evenly" in refused.stderr, refused.stderr  # the rank's own reason, above
    # Both ranks refuse the batch; which one torchrun hears of first is a race.
    assert re.fullmatch(
        r"error: training stopped: rank [01] of 2 exited with code 1 \(its error is above\); the other "
        r"processes were stopped",
        refused.stderr.strip().splitlines()[-1],
    ), refused.stderr
