"""Exact resume: a run continued from a mid-epoch checkpoint ends bit-identical, also in a new process."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from clirun import foveal_cli, foveal_cli_subprocess
from safetensors.torch import load_file

from foveal.errors import FovealError
from foveal.training import train
from foveal.training.state import Progress, list_checkpoints, load_checkpoint


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights" / "last.safetensors"))


def losses(run: Path) -> list[tuple[str, str, str]]:
    return [
        (r["train_loss"], r["val_loss"], r["val_top1"]) for r in csv.DictReader((run / "results.csv").open())
    ]


def copy_run_until(run: Path, destination: Path, checkpoint: Path, *, keep_best: bool = False) -> Path:
    """A run folder as it was when `checkpoint` was the newest thing saved (later state removed).

    keep_best: keep weights/best.safetensors, for a checkpoint after the first epoch (the best model
    saved by then is needed if no later epoch beats it; a later best is overwritten by the resume)."""
    kept = ("last.safetensors",) if keep_best else ("*.safetensors",)
    shutil.copytree(
        run,
        destination,
        ignore=shutil.ignore_patterns("state-*.pt", *kept, "*.png", "metrics.json"),
    )
    (destination / "checkpoints").mkdir(exist_ok=True)
    shutil.copy2(checkpoint, destination / "checkpoints" / checkpoint.name)
    return destination


RECIPE_WITH_EVERYTHING = {
    "model": "foveal-nano",  # whitened, batch-normed tokenizer
    "ema_decay": 0.9,
    "auto_augment": "trivial",
    "random_erase": 0.5,
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
}


@pytest.mark.parametrize(
    ("workers", "recipe", "new_process"),
    [
        (0, {}, False),
        (2, {}, False),
        pytest.param(0, RECIPE_WITH_EVERYTHING, True, marks=pytest.mark.slow),  # a resume in a new process
        (0, {"model": "hybrid-nano", "optimizer": "sgd", "bias_lr_scale": 64.0, "lookahead": True}, False),
        (0, {"model": "hybrid-nano", "optimizer": "muon"}, False),
    ],
    ids=["plain", "workers", "ema-mix-new-process", "hybrid-sgd-lookahead", "hybrid-muon"],
)
def test_resume_mid_epoch_is_bit_identical(
    class_folder: Path,
    tiny_train_options: dict,
    tmp_path: Path,
    workers: int,
    recipe: dict,
    new_process: bool,
) -> None:
    """`foveal train --resume`; with `new_process`, through `python -m foveal` in a fresh interpreter
    (nothing carried over in memory, other hash seeds); otherwise in this process."""
    options = {
        **tiny_train_options,
        "epochs": 2,
        "checkpoint_every_steps": 1,
        "keep_checkpoints": 100,
        "workers": workers,
        "model": "foveal-small",  # dropout and stochastic depth
        **recipe,
    }
    full = train(data=str(class_folder), quiet=True, **options).run_dir
    checkpoints = list_checkpoints(full / "checkpoints")
    # An epoch has 5 steps (33 images in batches of 8): step 2 is mid-epoch. With lookahead, epoch 2's,
    # once the slow weights exist (taken at step 5 of 10), so the resumed run must restore them.
    resume_epoch = 2 if recipe.get("lookahead") else 1
    middle = next(
        p
        for p in checkpoints
        if (load_checkpoint(p)["progress"]["epoch"], load_checkpoint(p)["progress"]["step"])
        == (resume_epoch, 2)
    )
    assert Progress(**load_checkpoint(middle)["progress"]).epoch == resume_epoch
    assert (load_checkpoint(middle)["lookahead"] is not None) == bool(recipe.get("lookahead"))
    resumed = copy_run_until(full, tmp_path / "resumed", middle, keep_best=resume_epoch > 1)
    resume = ("train", "--resume", str(resumed), "--quiet")
    done = foveal_cli_subprocess(*resume) if new_process else foveal_cli(*resume)
    assert done.returncode == 0, done.stderr
    expected, got = weights(full), weights(resumed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert losses(resumed) == losses(full)  # every later epoch's loss equal, to the printed digit


def test_checkpoints_load_with_weights_only_and_hold_the_whole_state(
    class_folder: Path, tiny_train_options: dict
) -> None:
    run = train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 1}).run_dir
    (last,) = list_checkpoints(run / "checkpoints")[-1:]
    state = torch.load(last, weights_only=True)  # no allowlist needed
    assert {"model", "optimizer", "scheduler", "rng", "progress"} <= state.keys()
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] == 0
    assert state["scheduler"]["last_epoch"] == 5  # 33 training images in batches of 8


def test_old_checkpoints_are_pruned(class_folder: Path, tiny_train_options: dict) -> None:
    run = train(
        data=str(class_folder),
        quiet=True,
        **{**tiny_train_options, "checkpoint_every_steps": 1, "keep_checkpoints": 2},
    ).run_dir
    assert len(list_checkpoints(run / "checkpoints")) == 2


def test_resume_with_nothing_to_resume_is_one_clear_line(
    tmp_path: Path, class_folder: Path, tiny_train_options: dict
) -> None:
    for target in (tmp_path / "missing", class_folder):
        done = foveal_cli("train", "--resume", str(target))
        assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
        assert "not a Foveal run folder" in done.stderr
    run = train(data=str(class_folder), quiet=True, **{**tiny_train_options, "epochs": 1}).run_dir
    with pytest.raises(FovealError, match="already finished"):
        train(resume=run, quiet=True)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(FovealError, match="nothing to resume"):
        train(resume=run, quiet=True)
