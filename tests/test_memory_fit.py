"""A run that would not fit in memory is refused before its first step, in one line that says what
fits (issue #33: `--batch-size 100000` was killed by the kernel, silently); where the free memory is
unknown nothing is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli_subprocess
from synthetic import make_class_folder

from foveal.config import make_train_config
from foveal.data import mapped
from foveal.data.builtin import load_builtin
from foveal.errors import DataError, FovealError
from foveal.models import create_model
from foveal.training.footprint import (
    FIT_MEMORY_SHARE,
    StepMemory,
    check_step_fits,
    free_memory,
    measure_step_memory,
)
from foveal.training.recipe import EPOCH_DEFAULTS, resolve_recipe

CPU = torch.device("cpu")
PHOTO = 224  # px: foveal-small's explicit attention keeps about 0.5 GB an image for its backward here


@pytest.mark.slow  # an end-to-end run of tens of seconds on a 2-core CPU
def test_an_absurd_batch_is_refused_in_one_line_before_a_run_folder(tmp_path: Path) -> None:
    """Through the real command: exit code 1, one line naming the largest batch that fits, no
    traceback and no run folder. The folder holds more images than a step of them can fit on this
    machine, so that the batch is what does not fit (a batch is never more than the images)."""
    memory = measure_step_memory(create_model("foveal-small", num_classes=3, img_size=PHOTO), PHOTO, CPU)
    free = free_memory(CPU)
    assert free is not None, "Linux reports its available memory"
    fitting = memory.largest_batch(FIT_MEMORY_SHARE * free)
    if fitting > 3_000:
        pytest.skip(f"{free / 1e9:.0f} GB free: a step of more images than fit would take a large folder")
    per_class = math.ceil(2 * fitting / 3) + 4  # 3 classes, twice what fits: room for the memory to vary
    folder = make_class_folder(tmp_path / "photos", per_class=per_class, size=20)
    runs = tmp_path / "runs"
    done = foveal_cli_subprocess(
        "train", str(folder), "--model", "foveal-small", "--img-size", str(PHOTO), "--batch-size", "100000",
        "--device", "cpu", "--out", str(runs), "--no-report",
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    *before, refusal = done.stderr.strip().splitlines()
    assert all(line.startswith("data: decoded ") for line in before), before  # a slow decoding's progress
    assert refusal.startswith("error: --batch-size 100000: ")
    largest = int(refusal.split("the largest batch that fits is ")[1].split(":")[0].replace(",", ""))
    assert 1 <= largest < 3 * per_class and f"pass --batch-size {largest} " in refusal
    assert not runs.exists()


def test_a_step_is_checked_against_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = StepMemory(per_image=1_000_000, fixed=5_000_000)  # 1 MB an image, 5 MB of weights
    free = (memory.bytes_for(100) + 1) / FIT_MEMORY_SHARE  # room for a step of 100 images
    monkeypatch.setattr("foveal.training.footprint.free_memory", lambda device: free)
    check_step_fits(memory, 100, 10_000, CPU)
    check_step_fits(memory, 100_000, 100, CPU)  # a batch larger than the data is a step of the data
    check_step_fits(memory, 200, 10_000, CPU, processes=2)  # each process holds half the batch
    with pytest.raises(FovealError, match=r"^--batch-size 101: .*the largest batch that fits is 100: pass"):
        check_step_fits(memory, 101, 10_000, CPU)
    with pytest.raises(FovealError, match="the largest batch that fits is 200"):
        check_step_fits(memory, 202, 10_000, CPU, processes=2)
    monkeypatch.setattr("foveal.training.footprint.free_memory", lambda device: 1_000_000.0)
    with pytest.raises(FovealError, match="not even one image fits: use a smaller --img-size or --model"):
        check_step_fits(memory, 1, 10_000, CPU)


def test_nothing_is_refused_where_the_free_memory_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    assert free_memory(torch.device("mps")) is None  # Apple's unified memory has a limit of its own
    check_step_fits(StepMemory(per_image=10**15, fixed=0), 10**6, 10**6, torch.device("mps"))
    monkeypatch.setattr("foveal.training.footprint.available_memory", lambda: None)
    monkeypatch.setattr(mapped, "available_memory", lambda: None)
    assert free_memory(CPU) is None
    check_step_fits(StepMemory(per_image=10**15, fixed=0), 10**6, 10**6, CPU)
    mapped.check_fits_in_memory(10**9, 4096, mappable=False)


def test_a_default_batch_is_halved_until_a_step_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model(EPOCH_DEFAULTS["model"], num_classes=10, img_size=32)
    memory = measure_step_memory(model, 32, CPU)
    free = (memory.bytes_for(20) + 1) / 0.25  # STEP_MEMORY_SHARE of it holds a step of 20 images
    monkeypatch.setattr("foveal.training.footprint.free_memory", lambda device: free)
    resolved, _ = resolve_recipe(make_train_config(), 1_000, CPU, 32, 10)
    assert resolved.optim.batch_size == 16  # 64 halved until it fits
    assert resolved.optim.lr == pytest.approx(EPOCH_DEFAULTS["lr"] * 16 / EPOCH_DEFAULTS["batch_size"])
    given, _ = resolve_recipe(make_train_config(batch_size=64), 1_000, CPU, 32, 10)
    assert given.optim.batch_size == 64  # the user's: kept here, checked before the first step


def test_measuring_leaves_the_model_and_the_random_streams_as_they_were() -> None:
    model = create_model("hybrid-airbench-half", num_classes=10, img_size=32)  # batch norm in its trunk
    before, rng = {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()
    memory = measure_step_memory(model, 32, CPU)
    assert memory.per_image > 0 and memory.fixed > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_decoded_images_that_cannot_fit_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held in memory (--data-storage memory, or a built-in set), decoded images may take half the
    available memory; "auto" maps a larger folder from disk instead."""
    available = 2 * mapped.decoded_bytes(1_000, 64)  # half of it holds 1,000 images at 64 px
    monkeypatch.setattr(mapped, "available_memory", lambda: available)
    assert mapped.keep_in_memory(1_000, 64, "memory")
    assert not mapped.keep_in_memory(1_001, 64)  # auto: mapped, not refused
    with pytest.raises(DataError, match=r"use --img-size 56 or less or --data-storage auto"):
        mapped.keep_in_memory(1_001, 64, "memory")
    monkeypatch.setattr(mapped, "available_memory", lambda: 10**6)
    with pytest.raises(DataError, match=r"the 1,797 decoded images at 64px .*; use --img-size 8 or less\.$"):
        load_builtin("digits", 64)
