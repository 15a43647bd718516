"""Everything a run needs before its first step: threads, device, data, model, run folder, records."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from foveal.data.preprocess import Preprocessing, channel_stats
from foveal.data.sources import DataSplits, default_img_size, load_training_data
from foveal.errors import FovealError
from foveal.io import atomic_write_json
from foveal.models import build_model, config_to_dict, model_config
from foveal.models.whitening import init_from_data
from foveal.runtime import resolve_device, seed_everything, set_threads, to_fast_layout
from foveal.saved import ModelInfo
from foveal.training.config import TrainConfig, make_train_config
from foveal.training.progress import say
from foveal.training.recipe import resolve_recipe
from foveal.training.records import write_skipped
from foveal.training.run_dir import next_run_dir


@dataclass
class RunSetup:
    """The pieces one run works with."""

    config: TrainConfig
    data: DataSplits
    model: nn.Module
    info: ModelInfo  # what every saved model of the run carries
    device: torch.device
    run_dir: Path
    data_seconds: float  # finding and decoding the images

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"


def prepare_run(config: TrainConfig, quiet: bool, run_dir: Path | None = None) -> RunSetup:
    """Set up a new run (a new numbered folder), or an existing `run_dir` being resumed."""
    threads = set_threads(config.threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    img_size = config.img_size or default_img_size(config.data)
    overrides = {} if config.drop_path_rate is None else {"drop_path_rate": config.drop_path_rate}
    started = time.perf_counter()
    data = load_training_data(
        config.data,
        img_size,
        val_fraction=config.val_fraction,
        split_manifest=config.split_manifest,
        max_pixels=config.max_image_pixels,
        storage=config.data_storage,
    )
    data_seconds = time.perf_counter() - started
    config = resolve_recipe(config, len(data.train), device, img_size, len(data.classes))
    # Build the model before creating the run folder, so a bad option leaves no empty folder.
    arch = model_config(config.model, num_classes=len(data.classes), img_size=img_size, **overrides)
    model = build_model(arch).to(device)
    preprocessing = Preprocessing(img_size, *channel_stats(data.train))
    if run_dir is None:  # a resumed run loads its weights from its checkpoint instead
        init_from_data(model, data.train.images, preprocessing)
    model = to_fast_layout(model)
    info = ModelInfo(
        arch, data.classes, preprocessing, {"train_config": config.to_dict(), "data": data.description}
    )
    params = sum(p.numel() for p in model.parameters())
    record = {
        "train": config.to_dict(),
        "model": config_to_dict(arch),
        "preprocessing": preprocessing.to_dict(),
        "classes": data.classes,
        "data": data.description,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "images_memory_mapped": data.train.mapped,
        "device": str(device),
        "threads": threads,
        "parameters": params,
        "torch": torch.__version__,
    }
    if run_dir is None:
        run_dir = next_run_dir(config.out, config.name)
        _write_records(run_dir, record, data, quiet)
    else:
        _check_same_data(run_dir, record)
    say(
        f"model: {config.model} ({params / 1e6:.2f}M parameters) at {img_size}px on {device} "
        f"({threads} threads); run folder {run_dir}",
        quiet,
    )
    return RunSetup(config, data, model, info, device, run_dir, data_seconds)


def _write_records(run_dir: Path, record: dict, data: DataSplits, quiet: bool) -> None:
    atomic_write_json(run_dir / "config.json", record)
    if data.split:
        atomic_write_json(run_dir / "split.json", {"classes": data.classes, **data.split})
    skipped = data.train.skipped + data.val.skipped
    write_skipped(run_dir / "skipped.txt", skipped)
    say(f"data: {data.description}; {len(data.classes)} classes", quiet)
    if data.train.mapped:
        say("data: the decoded images are memory-mapped from the decode cache, not held in memory", quiet)
    if skipped:
        shown = "".join(f"\n  {path}: {reason}" for path, reason in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        say(
            f"skipped {len(skipped)} files that cannot be used (all listed in {run_dir}/skipped.txt):"
            f"{shown}{more}",
            quiet,
        )


def _check_same_data(run_dir: Path, record: dict) -> None:
    """Exact resume needs the data the run started with; refuse if the folder has changed."""
    saved = json.loads((run_dir / "config.json").read_text())
    for key in ("classes", "train_images", "val_images"):
        if saved.get(key) != record[key]:
            raise FovealError(
                f"the data changed since {run_dir} started ({key}: {saved.get(key)} then, "
                f"{record[key]} now); resume needs the same images, or start a new run."
            )


def read_run_record(run_dir: str | Path, purpose: str) -> dict:
    """The config.json a run folder was started with; `purpose` ("resumed", ...) ends the error
    message when the folder is not a run folder or the file is damaged."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FovealError(
            f"{run_dir} is not a Foveal run folder (no config.json); pass the folder a "
            "`foveal train` run created, e.g. runs/train."
        )
    try:
        record = json.loads(path.read_text())
        record["train"]  # noqa: B018  (every run records its training options)
    except (ValueError, KeyError, TypeError) as error:
        raise FovealError(f"{path} is damaged ({error}); the run cannot be {purpose}.") from None
    return record


def config_of_run(run_dir: str | Path) -> tuple[TrainConfig, Path]:
    """The TrainConfig a run folder was started with, for resuming it."""
    options = read_run_record(run_dir, "resumed")["train"]
    return make_train_config(**options), Path(run_dir)
