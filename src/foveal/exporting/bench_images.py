"""The image files `foveal bench` decodes end to end: the user's, the run's held-out ones, or made up.

End-to-end times start from a file on disk, so they need real files: `--images DIR` when given;
else the held-out images of the run the model came from, when they are still where the run found
them (the run's split.json or its data's val/ or test/ folder lists them, nothing is decoded to
find them); else a few JPEG files made here, which the record says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from foveal.data.files import collect_images, decode_paths
from foveal.data.preprocess import Preprocessing
from foveal.data.sources import BUILTINS, HELD_OUT_NAMES
from foveal.data.split import read_manifest
from foveal.errors import FovealError
from foveal.predictor.saved import resolve_model_path
from foveal.runs import RunRecord

MAX_FILES = 64  # evenly spaced: enough to vary the input, few enough to decode up front in a second
SYNTHETIC_FILES = 8
SYNTHETIC_SIZE = (640, 480)  # width, height: a common web or camera-preview photo


@dataclass
class BenchImages:
    files: list[Path]  # the files that decode, timed end to end in turn
    pixels: torch.Tensor  # uint8 (N, 3, S, S): the same files decoded once, for the model-only timings
    source: str  # where they came from, in words
    synthesized: bool  # made up by the bench (no --images, no held-out files to be found)
    skipped: int  # files that did not decode


def bench_images(
    given: str | Path | None, model: Path, preprocessing: Preprocessing, scratch: Path
) -> BenchImages:
    """The end-to-end images for `model`: the files under `given`, the run's held-out files, or
    SYNTHETIC_FILES JPEGs written into `scratch`. Raises DataError when `given` has no image files
    and FovealError when none of them decodes."""
    synthesized = False
    if given is not None:
        files, source = collect_images([given]), str(given)
    elif (held_out := held_out_files(model)) is not None:
        files, source = held_out
    else:
        files, synthesized = synthesize_jpegs(scratch), True
        width, height = SYNTHETIC_SIZE
        source = (
            f"{len(files)} synthetic {width}x{height} JPEGs (smooth random noise, quality 90), "
            "made because no --images were given and no held-out files were found"
        )
    spaced = np.linspace(0, len(files) - 1, min(len(files), MAX_FILES)).round().astype(int)
    chosen = [files[i] for i in spaced]
    pixels, good, failed = decode_paths(chosen, preprocessing)
    return BenchImages(good, pixels, source, synthesized, len(failed))


def held_out_files(model: Path) -> tuple[list[Path], str] | None:
    """The held-out image files of the run `model` comes from, and their description; None for a
    model without its run, a built-in data set (no files) or data that has moved."""
    try:
        folders = [model] if model.is_dir() else []
        folders.append(resolve_model_path(model).parent.parent)  # run/weights/best.safetensors
    except FovealError:
        return None
    for folder in folders:
        try:
            source = RunRecord.read(folder).train_config.data.source
        except (FovealError, OSError, ValueError):
            continue
        if source in BUILTINS or not Path(source).exists():
            return None
        # A table of labels (data.csv) names its files relative to its folder, as split.json does.
        root = Path(source) if Path(source).is_dir() else Path(source).parent
        files = _listed_held_out(folder, root)
        return (files, f"{len(files)} held-out images of the run ({source})") if files else None
    return None


def synthesize_jpegs(folder: Path, count: int = SYNTHETIC_FILES, seed: int = 0) -> list[Path]:
    """`count` JPEG files of SYNTHETIC_SIZE in `folder`: coarse random colours smoothly enlarged, so
    that they compress and decode like photographs rather than like pure noise."""
    rng = np.random.default_rng(seed)
    width, height = SYNTHETIC_SIZE
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, size=(height // 32, width // 32, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(SYNTHETIC_SIZE, Image.Resampling.BICUBIC)
        paths.append(folder / f"synthetic-{i}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def _listed_held_out(run: Path, root: Path) -> list[Path]:
    """An auto-split run's val files (split.json, paths relative to the data root), or the files of
    the data's own held-out folder (root/val or root/test), those still there."""
    if (run / "split.json").is_file():
        try:
            return [root / p for p in read_manifest(run / "split.json")["val"] if (root / p).is_file()]
        except FovealError:
            return []
    for name in HELD_OUT_NAMES:
        if (root / name).is_dir() and (root / "train").is_dir():
            try:
                return collect_images([root / name])
            except FovealError:
                return []
    return []
