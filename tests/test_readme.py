"""The README's examples run as written: each Python block in a fresh process in an empty folder,
and every command of the quick start and the tour, in order, on small data made here.

Both train for minutes (the Python block on the built-in digits for 20 epochs), so they are `slow`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from synthetic import make_class_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_has_python_to_run() -> None:
    blocks = python_blocks(README.read_text())
    assert blocks and all("foveal" in block for block in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text()))))
def test_each_python_block_of_the_readme_runs_as_written(index: int, tmp_path: Path) -> None:
    block = python_blocks(README.read_text())[index]
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    if "digit.png" in block:  # the tour's Python block: its files and its answers
        lines = done.stdout.splitlines()
        assert lines[0].startswith("runs/python ") and float(lines[0].split()[1].rstrip("%")) > 90
        [digit] = [line for line in lines if line.startswith("digit.png ")]
        assert "['0'," in digit  # the nearest class of scikit-learn's first digit, a 0
        assert (tmp_path / "runs" / "python" / "report.html").is_file()
        assert (tmp_path / "runs" / "python-bundle" / "config.json").is_file()


# The tour's command lines this test does not run, and why (matched by how the line starts).
NOT_RUN = {
    "pip install": "installs packages",
    "foveal train path/to/flowers --time 10m": "a 10-minute budget (tests/test_budget*.py run short ones)",
    "foveal train --resume": "needs an interrupted run (test_interrupt.py and test_kill.py resume some)",
    "foveal train path/to/dataset --init-from hf-hub:": "downloads a ViT (test_public_vit.py: from a cache)",
    "foveal predict hf-hub:": "downloads a ViT (test_pretrained.py reads one from a filled cache)",
    "foveal serve": "a server runs until stopped (tests/test_serve.py starts real ones on loopback)",
    "curl": "needs the server above",
    "foveal compare path/to/flowers --time 10m": "ten minutes of training for each of three models",
    "tensorboard": "a server runs until stopped (test_tracking_tensorboard.py reads the events it shows)",
    "foveal train path/to/flowers --log mlflow --mlflow-uri": "a tracking server (test_tracking_mlflow.py)",
    "mlflow models serve": "a server runs until stopped (test_export_mlflow.py serves one on loopback)",
}


def shell_lines(text: str) -> list[str]:
    return [
        line
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
        for line in block.splitlines()
    ]


def small_data(folder: Path) -> dict[str, str]:
    """The tour's placeholders -> small real data made here: images in class folders (named as the
    tour's classes, so `--class cat` means something), a train/val data set, a photo, a folder."""
    flowers = make_class_folder(folder / "flowers", per_class=12)
    dataset = make_class_folder(folder / "dataset" / "train", per_class=10).parent
    make_class_folder(dataset / "val", per_class=4, seed=2)
    for classes in (flowers, dataset / "train", dataset / "val"):  # one task: the same class names
        for old, new in zip(("circle", "square", "triangle"), ("cat", "dog", "bird")):
            (classes / old).rename(classes / new)
    photos = folder / "photos"
    photos.mkdir()
    for i, image in enumerate(sorted((flowers / "dog").iterdir())[:3]):
        Image.open(image).save(photos / f"photo{i}.jpg")
    table = folder / "labels.csv"  # the flowers listed in a table, paths relative to it
    images = sorted(flowers.rglob("*.png"))
    rows = [f"flowers/{image.parent.name}/{image.name},{image.parent.name}" for image in images]
    table.write_text("file_name,label\n" + "\n".join(rows) + "\n")
    return {
        "path/to/labels.csv": str(table),
        "path/to/flowers": str(flowers),
        "path/to/test_folder": str(flowers),
        "path/to/photos": str(flowers),
        "path/to/dataset": str(dataset),
        "photo.jpg": str(photos / "photo0.jpg"),
        "more_photos/": str(photos),
        "photos/": str(photos),
    }


@pytest.mark.slow
def test_the_tour_runs_as_written_on_small_data(tmp_path: Path) -> None:
    """Every command of the README (the quick start, then the tour in order) on small data, in one
    folder, as a newcomer would type them; NOT_RUN lists the few that cannot run here."""
    text = README.read_text()
    quick_start = shell_lines(text[text.index("## Quick start") : text.index("## Tests")])
    tour = shell_lines(text[text.index("## Tour") : text.index("## Benchmarks")])
    commands = [line for line in quick_start if line.startswith("foveal ")] + tour
    data = small_data(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = Path(sys.executable).parent
    failures, ran = [], 0
    for line in commands:
        if not line.strip() or any(line.startswith(prefix) for prefix in NOT_RUN):
            continue
        words = [data.get(word, word) for word in shlex.split(line, comments=True)]
        program = sys.executable if words[0] == "python" else str(bin_dir / words[0])
        done = subprocess.run([program, *words[1:]], cwd=work, capture_output=True, text=True, timeout=900)
        ran += 1
        if done.returncode != 0 or "Traceback" in done.stderr:
            failures.append(f"{line}\n  exit {done.returncode}: {done.stderr.strip()[-600:]}")
    assert not failures, "\n".join(failures)
    assert ran >= 25
    assert (work / "runs" / "flowers" / "report.html").is_file()
