"""Ctrl-C during training: the step in hand finishes, a checkpoint is saved, the exact --resume
command is printed, and resuming with it ends bit-identical to a run never interrupted (the whole
command in child processes: `slow`)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic import make_class_folder

import foveal
from foveal.training.interrupt import DeferredInterrupt


def test_the_first_ctrl_c_is_deferred_and_the_second_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with DeferredInterrupt(quiet=True) as interrupt:
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested  # noted, nothing raised: the loop decides when to stop
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # Python's own handling is back


def train_command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "foveal", "train", str(data), "--model", "foveal-tiny", "--epochs", "10",
        "--batch-size", "8", "--img-size", "16", "--threads", "2", "--no-report", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow  # three Python processes' start-up and a training run each: about 25 s
def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path: Path) -> None:
    data = make_class_folder(tmp_path / "shapes", per_class=20)
    # The same run, never interrupted, in this process (as the command would run it).
    foveal.train(
        data=str(data), model="foveal-tiny", epochs=10, batch_size=8, img_size=16, threads=2,
        report=False, out=str(tmp_path / "reference"), quiet=True,
    )  # fmt: skip

    process = subprocess.Popen(
        train_command(data, tmp_path / "runs"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    seen = []
    for line in process.stderr:  # wait until training is under way, then press Ctrl-C
        seen.append(line)
        if line.startswith("epoch 2/10: loss"):  # the second epoch ended
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=120)[1]
    said = "".join(seen) + rest
    assert process.returncode == 130, said
    assert "Traceback" not in said and "checkpoint saved in" in said
    command = said.strip().splitlines()[-1].strip()
    run = tmp_path / "runs" / "train"
    assert command == f"foveal train --resume {shlex.quote(str(run))}"
    assert not (run / "metrics.json").exists()  # stopped before the end

    resumed = subprocess.run(
        [sys.executable, "-m", "foveal", *shlex.split(command)[1:]], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    expected = load_file(str(tmp_path / "reference" / "train" / "weights" / "last.safetensors"))
    got = load_file(str(run / "weights" / "last.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected), "the resumed run differs"
