"""Everything a run needs before its first step: threads, device, data, model, run folder, records."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from foveal.config import TrainConfig
from foveal.data.preprocess import Preprocessing, channel_stats
from foveal.data.sources import BUILTINS, DataSplits, default_img_size, load_training_data
from foveal.errors import FovealError
from foveal.io import atomic_write_json
from foveal.messages import counted, quieted
from foveal.models import build_model, config_to_dict, model_config
from foveal.models.layers.whitening import init_from_data
from foveal.predictor.saved import ModelInfo
from foveal.runs import RunRecord, next_run_dir
from foveal.runtime import resolve_device, resolve_precision, seed_everything, set_threads, to_fast_layout
from foveal.training import distributed, elastic, finetune
from foveal.training.clock import SYSTEM_CLOCK, Clock
from foveal.training.footprint import check_step_fits, measure_step_memory
from foveal.training.forecast import forecast_words
from foveal.training.progress import say
from foveal.training.recipe import (
    PHOTO_PLAN_SECONDS,
    fit_img_size,
    is_photo_run,
    measured_training_rate,
    resolve_recipe,
)
from foveal.training.records import write_skipped


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

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.config.optim.batch_size)


def prepare_run(
    config: TrainConfig, quiet: bool, run_dir: Path | None = None, clock: Clock = SYSTEM_CLOCK
) -> RunSetup:
    """Set up a new run (a new numbered folder), or an existing `run_dir` being resumed; the data's
    seconds are read from `clock`, the run's (clock.py)."""
    threads = set_threads(config.run.threads or distributed.threads_per_rank())
    device = distributed.rank_device(resolve_device(config.run.device))
    seed_everything(config.run.seed)
    # Recorded resolved, like the recipe: a resumed run keeps its arithmetic on any machine.
    config = config.replace(precision=resolve_precision(device, config.run.precision))
    if run_dir is None and config.data.source not in BUILTINS and Path(config.data.source).exists():
        # Recorded absolute, so that the run's later commands (report, export, bench) find its
        # held-out images from any folder.
        config = config.replace(data=str(Path(config.data.source).resolve()))
    source = None
    if config.finetune.init_from and run_dir is None:  # learned weights: the source's size by default
        source, native = finetune.source_img_size(config)
    else:
        native = config.data.img_size or default_img_size(config.data.source)
    # This machine's training speed, measured once: for the plans of a time budget or of the photo
    # defaults (the resolution, then the model) and for the start line's epoch estimate (a quiet run
    # that plans nothing skips it). What follows from it is rank 0's to decide: every rank must train
    # the same model at the same size.
    photos = is_photo_run(config, native)
    plans = bool(config.optim.time_budget) or photos
    training_gflops = measured_training_rate(config, device, photos=photos) if plans or not quiet else None
    if config.data.img_size or (config.finetune.init_from and source is None):
        chosen_size = native  # given, or a resumed fine-tuning run's recorded size
    elif source is not None:  # fine-tuning: the source's size, or a multiple of it the budget affords
        chosen_size = finetune.plan_img_size(config, source, training_gflops)
    else:
        chosen_size = fit_img_size(config, native, training_gflops)
    img_size = distributed.from_main(chosen_size)
    config = config.replace(img_size=img_size)  # recorded: a resumed run decodes at this size again
    overrides = {} if config.model.drop_path_rate is None else {"drop_path_rate": config.model.drop_path_rate}
    resumed_start = None
    if config.finetune.init_from and run_dir is not None:  # a fine-tuning run resumed: its own records
        resumed_start = finetune.resume_start(run_dir, config)
    # A fine-tuned model reads images as its source did (a public ViT: bicubic, crop_pct 0.9, ...).
    reading = source.preprocessing if source is not None else getattr(resumed_start, "preprocessing", None)
    resize = {} if reading is None else {"interpolation": reading.interpolation, "crop_pct": reading.crop_pct}
    started = clock.now()
    with quieted(quiet):  # a first decoding of a large folder says how far it is, unless quiet
        data = load_training_data(
            config.data.source,
            img_size,
            val_fraction=config.data.val_fraction,
            split_manifest=config.data.split_manifest,
            max_pixels=config.data.max_image_pixels,
            storage=config.data.data_storage,
            **resize,
        )
    data_seconds = clock.now() - started
    transfer = None
    if config.finetune.init_from:  # the model, its preprocessing and the recipe from the source
        start = resumed_start or finetune.start_from_source(source, config, data.classes)
        config, budget_estimate = distributed.from_main(
            finetune.finetune_recipe(config, start.model, len(data.train), img_size, training_gflops)
        )
        arch, model, transfer = start.arch, start.model.to(device), start.report
        preprocessing = replace(start.preprocessing, test_time_views=config.augment.test_time_views)
        if config.finetune.freeze_batch_norm:
            finetune.freeze_batch_norm(model)
    else:
        config, budget_estimate = distributed.from_main(
            resolve_recipe(
                config, len(data.train), device, img_size, len(data.classes), training_gflops, photos=photos
            )
        )
        # Build the model before creating the run folder, so a bad option leaves no empty folder.
        arch = model_config(
            config.model.preset, num_classes=len(data.classes), img_size=img_size, **overrides
        )
        model = build_model(arch).to(device)
        mean, std = channel_stats(data.train)
        preprocessing = Preprocessing(img_size, mean, std, test_time_views=config.augment.test_time_views)
        if run_dir is None:  # a resumed run loads its weights from its checkpoint instead
            init_from_data(model, data.train.images, preprocessing.normalize)
    distributed.check_batch(config.optim.batch_size, len(data.train))  # before a folder is made
    model = to_fast_layout(model)
    step_memory = measure_step_memory(model, img_size, device, config.run.precision)
    if config.finetune.finetune != "probe":  # a probe trains the head alone, on features computed once
        processes = distributed.world().size
        check_step_fits(step_memory, config.optim.batch_size, len(data.train), device, processes)
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
        "processes": distributed.world().size,  # the batch is global: a resume may use another count
        "launch_id": elastic.launch_id(),  # torchrun's: a restart finds its run by it (elastic.py)
        "parameters": params,
        # Under --time or the photo defaults, what the ladder measured and estimated when it chose the
        # model (training/recipe.py)
        "budget_estimate": budget_estimate,
        "torch": torch.__version__,
    }
    if transfer is not None:
        record["init_from"] = transfer.to_dict()
    if run_dir is None:  # rank 0 picks the folder and writes in it; the others are told where it is
        if distributed.is_main():
            run_dir = next_run_dir(config.run.out, config.run.name)
            _write_records(run_dir, record, data, quiet)
        run_dir = distributed.from_main(run_dir)
    else:
        _check_same_data(run_dir, record)
    lowered = ""
    if img_size != native:
        moved = "raised" if img_size > native else "lowered"
        plan = (
            f"the {config.optim.time_budget:g} s budget"
            if config.optim.time_budget
            else f"{config.optim.epochs} epochs in about {PHOTO_PLAN_SECONDS / 60:g} minutes"
        )
        lowered = f" ({moved} from {native}px for {plan}; --img-size sets it)"
    if transfer is not None:
        say(transfer.line(), quiet)
    name = config.model.preset or arch.name  # a fine-tuned model is its source's architecture
    planned = _planned(config.model.preset, budget_estimate) if config.optim.time_budget else ""
    batch = config.optim.batch_size
    forecast = forecast_words(model, img_size, batch, data, device, step_memory, training_gflops)
    say(
        f"model: {name} ({params / 1e6:.2f}M parameters) at {img_size}px{lowered} on {device} "
        f"({threads} thread{'s' if threads != 1 else ''}, {config.run.precision}){planned}; "
        f"{forecast}; run folder {run_dir}",
        quiet,
    )
    if config.finetune.init_from:
        say(finetune.plan_words(config, budget_estimate or {}), quiet)
    return RunSetup(config, data, model, info, device, run_dir, data_seconds)


def _planned(model: str, budget_estimate: dict | None) -> str:
    """What the budget's plan expects of `model` (the ladder's rungs only), for the start line."""
    if not budget_estimate or model not in budget_estimate.get("estimated_passes", {}):
        return ""
    passes, rate = budget_estimate["estimated_passes"][model], budget_estimate["training_gflops"]
    return f", about {passes:.1f} passes over the data in the budget at the {rate:.0f} GFLOP/s measured"


def _write_records(run_dir: Path, record: dict, data: DataSplits, quiet: bool) -> None:
    atomic_write_json(run_dir / "config.json", record)
    if data.split:
        atomic_write_json(run_dir / "split.json", {"classes": data.classes, **data.split})
    skipped = data.train.skipped + data.val.skipped
    # A table's unusable rows too (the loader has said them, line by line, in one message)
    write_skipped(run_dir / "skipped.txt", data.skipped_rows + skipped)
    say(f"data: {data.description}; {len(data.classes)} classes", quiet)
    if data.train.mapped:
        say("data: the decoded images are memory-mapped from the decode cache, not held in memory", quiet)
    if skipped:
        shown = "".join(f"\n  {path}: {reason}" for path, reason in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        say(
            f"skipped {counted(len(skipped), 'file')} that cannot be used "
            f"(all listed in {run_dir}/skipped.txt):"
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


def config_of_run(run_dir: str | Path) -> tuple[TrainConfig, Path]:
    """The TrainConfig a run folder was started with (at the image size it trained at), for resuming it."""
    return RunRecord.read(run_dir, "resumed").train_config, Path(run_dir)
