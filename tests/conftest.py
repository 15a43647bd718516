"""Shared fixtures: tiny synthetic image folders made in a temp dir, tiny training settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from synthetic import make_class_folder

from foveal.runtime import cores_each, default_threads


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (-n N) each worker, and every command it starts, gets cores // N threads
    through OMP_NUM_THREADS (read by PyTorch and by Foveal's default, runtime.default_threads): N
    workers of a thread per core each would spin their OpenMP threads against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(cores_each(workers))
        torch.set_num_threads(default_threads())  # OpenMP read the variable when torch was imported


_share_the_cores_between_workers()


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tests' decoded-image cache out of the user's ~/.cache/foveal (subprocesses inherit it)."""
    import os

    os.environ["FOVEAL_HOME"] = str(tmp_path_factory.mktemp("foveal_home"))


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/<class>/<image>.png: 3 classes x 12 images of 20x20 px."""
    return make_class_folder(tmp_path / "shapes")


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """root/train/<class>/ and root/val/<class>/."""
    root = tmp_path / "shapes_split"
    make_class_folder(root / "train", per_class=10, seed=1)
    make_class_folder(root / "val", per_class=4, seed=2)
    return root


@pytest.fixture
def tiny_train_options(tmp_path: Path) -> dict:
    """Settings for a run that takes a second or two on a CPU."""
    return {
        "model": "foveal-tiny",
        "epochs": 2,
        "batch_size": 8,
        "img_size": 16,
        "out": str(tmp_path / "runs"),
        "report": False,  # report.html is tested in test_report.py; here it would only add time
    }


@pytest.fixture
def foveal_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test's own empty Foveal cache folder ($FOVEAL_HOME), with the decode cache switched on."""
    home = tmp_path / "foveal_home"
    monkeypatch.setenv("FOVEAL_HOME", str(home))
    monkeypatch.delenv("FOVEAL_NO_CACHE", raising=False)
    return home
