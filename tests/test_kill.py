"""Kill test: SIGKILL a training run at random moments, resume each time, and end bit-identical.

With Foveal's atomic checkpoint writer no kill may leave an unloadable newest checkpoint; with a
naive direct writer patched in, the same procedure must find corrupt ones (the test has teeth).
CI runs a short version; `pytest -m slow` runs 20 kills per mode.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foveal.errors import ModelFileError
from foveal.train import train
from foveal.train.state import list_checkpoints, load_checkpoint

RUNNER = Path(__file__).with_name("killrun.py")


def options(out: Path) -> dict:
    # foveal-medium: a 15 MB checkpoint, slow enough to write that kills land mid-write.
    return {
        "model": "foveal-medium",
        "epochs": 2,
        "batch_size": 8,
        "img_size": 16,
        "threads": 2,
        "checkpoint_every_steps": 1,
        "checkpoint_every_minutes": None,
        "keep_checkpoints": 3,
        "out": str(out),
    }


def cli_args(opts: dict) -> list[str]:
    args = []
    for key, value in opts.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def newest_is_loadable(run: Path) -> bool | None:
    found = list_checkpoints(run / "checkpoints")
    if not found:
        return None
    try:
        load_checkpoint(found[-1])
        return True
    except ModelFileError:
        return False


def kill_and_resume(mode: str, data: Path, out: Path, kills: int, seed: int) -> tuple[Path, int, int]:
    """Run to completion through `kills` SIGKILLs; returns the run folder, kills landed, corrupt finds."""
    rng = random.Random(seed)
    run = out / "train"
    landed = corrupt = 0
    for attempt in range(kills + 50):
        if run.exists() and not list_checkpoints(run / "checkpoints"):
            shutil.rmtree(run)  # killed before its first checkpoint: start again, as a user would
        resuming = run.exists()
        args = ["--resume", str(run)] if resuming else [str(data), *cli_args(options(out))]
        command = [sys.executable, str(RUNNER), mode, "train", *args, "--quiet"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if landed < kills:
            time.sleep(rng.uniform(3.0, 15.0))  # start-up takes ~3 s, a whole run ~20 s
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                landed += 1
                corrupt += newest_is_loadable(run) is False
                if mode == "direct" and corrupt:
                    return run, landed, corrupt  # the naive writer has been caught
                continue
        _, stderr = process.communicate(timeout=600)
        if process.returncode == 0:
            return run, landed, corrupt
        if mode == "direct":
            return run, landed, corrupt + 1  # a resume that fails on a corrupt file is detection too
        raise AssertionError(f"resume failed (attempt {attempt}): {stderr}")
    raise AssertionError("the run never finished")


def run_kill_test(tmp_path: Path, data: Path, kills: int) -> None:
    reference = train(data=str(data), quiet=True, **options(tmp_path / "reference")).run_dir
    run, landed, corrupt = kill_and_resume("atomic", data, tmp_path / "atomic", kills, seed=kills)
    assert landed == kills and corrupt == 0
    expected, got = (
        load_file(str(reference / "weights" / "last.safetensors")),
        load_file(str(run / "weights" / "last.safetensors")),
    )
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    print(f"\nkill test: {landed} kills, {corrupt} corrupt newest checkpoints, final weights identical")
    _, landed_direct, corrupt_direct = kill_and_resume("direct", data, tmp_path / "direct", 3 * kills, seed=1)
    print(f"direct writer: corruption found after {landed_direct} kills")
    assert corrupt_direct >= 1


def test_kill_test_short(class_folder: Path, tmp_path: Path) -> None:
    run_kill_test(tmp_path, class_folder, kills=3)


@pytest.mark.slow
def test_kill_test_twenty_kills(class_folder: Path, tmp_path: Path) -> None:
    run_kill_test(tmp_path, class_folder, kills=20)
