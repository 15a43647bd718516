"""`foveal models`: quick (no model built, no torch imported), and every fact it lists is the built
model's or its registration's, so the recorded facts (cli/preset_facts.py) cannot go stale."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from clirun import foveal_cli, foveal_cli_subprocess

import foveal
import foveal.models
from foveal.cli.preset_facts import EPOCHS_DEFAULT, PRESETS, TIME_LADDER, PresetFacts
from foveal.training.recipe import BUDGET_LADDER, EPOCH_DEFAULTS, PHOTO_MIN_SIDE

LISTING_SECONDS = 2.0  # issue #16: building every model to count it made the listing take ~11 s
TIMED_RUNS = 3  # the fastest counts: a busy machine only ever adds time to a run


def test_every_registered_preset_is_listed_and_nothing_else() -> None:
    assert sorted(PRESETS) == foveal.list_models()


@pytest.mark.parametrize("name", foveal.list_models())
def test_the_listed_facts_are_the_built_models(name: str) -> None:
    model = foveal.create_model(name, num_classes=10)
    built = PresetFacts(
        family=model.config.family,
        img_size=model.config.img_size,
        params=sum(p.numel() for p in model.parameters()),
        purpose=foveal.models.model_description(name),
    )
    assert PRESETS.get(name) == built, f"cli/preset_facts.py needs: {name!r}: {built!r}"


def test_foveal_mini_and_foveal_small_are_listed_apart() -> None:
    # Both round to 0.35M; the listing shows whole counts, so two different models never read alike.
    listing = foveal_cli("models", "foveal-*").stdout
    assert "349,899" in listing and "349,515" in listing and "0.35M" not in listing


def test_the_recipe_marks_are_the_recipes_models() -> None:
    assert TIME_LADDER == tuple(rung.model for rung in BUDGET_LADDER)
    assert EPOCHS_DEFAULT == EPOCH_DEFAULTS["model"]
    listing = foveal_cli("models").stdout.splitlines()
    row = {line.split()[1]: line for line in listing if line.startswith("│")}
    assert "--time, short budgets" in row[BUDGET_LADDER[0].model]
    assert "--time, longer budgets" in row[BUDGET_LADDER[-1].model]
    assert f"runs without --time, images under {PHOTO_MIN_SIDE} px" in row[EPOCH_DEFAULTS["model"]]
    assert all("; photos" in row[rung.model] for rung in BUDGET_LADDER)  # photos without --time too
    assert "--time" not in row["foveal-nano"]


def test_the_listing_says_what_each_preset_is_for() -> None:
    listing = foveal_cli("models", "cct-7-3x1").stdout
    assert "3,760,139" in listing and "CCT paper's CIFAR-10 model" in listing
    assert all(facts.purpose and len(facts.purpose) <= 60 for facts in PRESETS.values())


def test_listing_imports_no_torch() -> None:
    """The cause of a slow listing, checked where timing cannot be flaky."""
    probe = (
        "import sys\nfrom foveal.cli.main import main\ntry:\n    main(['models'])\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_foveal_models_lists_in_under_2_seconds() -> None:
    seconds = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        done = foveal_cli_subprocess("models", timeout=60)
        seconds.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
        if seconds[-1] < LISTING_SECONDS:
            break
    assert min(seconds) < LISTING_SECONDS, f"`foveal models` took {seconds} s"
    assert all(name in done.stdout for name in PRESETS)
