"""How a run that starts from learned weights (`--init-from`) is set up and planned: the model and its
preprocessing from the source, the recipe, and the mode (probe, lp-ft, full) the budget buys.

A fine-tuned model reads images as its source did (mean, std, size, interpolation, crop): the source's
preprocessing is the new model's, saved with it, never the user's data's own statistics. The recipe is
AdamW with cosine decay at a low rate (a pretrained network collapses at from-scratch rates: Adam at
1e-2 gives constant predictions, TRANSFER.md), whatever the source family.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.config import TrainConfig
from foveal.data.preprocess import Preprocessing
from foveal.data.sources import BUILTINS, count_folder_images, default_img_size
from foveal.errors import ConfigError
from foveal.models import build_model, config_from_dict
from foveal.models.config import FamilyConfig, replace_config
from foveal.models.flops import forward_flops
from foveal.pretrained.checkpoint import PretrainedSource
from foveal.training.recipe import affordable_gflops_per_image, batch_for_small_data
from foveal.training.transfer import TransferReport, build_from_source, read_source

FINETUNE_RECIPE: dict[str, Any] = {
    "optimizer": "adamw",
    "lr_decay": "cosine",
    "label_smoothing": 0.1,
    "alternate_flips": False,
    "tta_flip": True,  # the mirror view: one more forward pass per held-out image
    "bias_lr_scale": 1.0,
    "lookahead": False,
    "ema_decay": 0.0,
    "warmup_epochs": 1.0,
}
FINETUNE_LR, FINETUNE_LR_BATCH = 2e-4, 64  # AdamW's peak lr, scaled by the square root of the batch
FINETUNE_BATCH = 64  # halved for small data sets (recipe.batch_for_small_data)
LPFT_MIN_PASSES = 3.0  # under --time, fewer estimated passes of full fine-tuning: the probe alone
FINETUNE_MIN_PASSES = 10.0  # under --time, a larger input than the source's only while it gets these
FREEZE_BATCH_NORM_BELOW = 32  # images per batch: below it, batch statistics are too noisy to learn


@dataclass
class StartingPoint:
    """What a run starting from learned weights begins with."""

    arch: FamilyConfig
    model: nn.Module
    preprocessing: Preprocessing  # the source's, at the run's image size (test-time views: the recipe's)
    report: TransferReport | None  # None for a resumed run: its checkpoint holds the weights


def source_img_size(config: TrainConfig) -> tuple[PretrainedSource, int]:
    """The source and the side the run trains at: --img-size, else the source's own (a ViT's position
    table is only resampled when asked: interpolated positions cost accuracy until fine-tuned)."""
    if config.model.preset is not None:
        raise ConfigError(
            f"--model {config.model.preset} with --init-from: the source's architecture is the model; "
            "leave out --model."
        )
    source = read_source(config.finetune.init_from)
    return source, config.data.img_size or source.preprocessing.img_size


def plan_img_size(config: TrainConfig, source: PretrainedSource, training_gflops: float | None) -> int:
    """The side a fine-tuning run trains at when the user gave none: the source's; under a time budget,
    the largest multiple of it, up to the data's own size, at which fully fine-tuning still gets
    FINETUNE_MIN_PASSES estimated passes and the same layers (the hybrid family's stem changes with the
    size: a 32-px CIFAR model goes to 64 px at most). Multiples keep the stride and patch grid whole; the
    position table is resampled (transfer.py)."""
    size = source.preprocessing.img_size
    if not config.optim.time_budget or training_gflops is None or config.data.source in BUILTINS:
        return size
    native = default_img_size(config.data.source)
    train_images, _ = count_folder_images(config.data.source, config.data.val_fraction)
    affordable = affordable_gflops_per_image(config.optim.time_budget, train_images, training_gflops)
    chosen, factor = size, 2
    while size * factor <= native:
        model = build_model(replace_config(source.config, img_size=size * factor))
        if not same_architecture(model, source):
            break  # a family whose layers follow the input size (the hybrid stem's stride)
        passes = affordable / (3 * forward_flops(model, size * factor) / 1e9)
        if passes < FINETUNE_MIN_PASSES:
            break
        chosen, factor = size * factor, factor + 1
    return chosen


def same_architecture(model: nn.Module, source: PretrainedSource) -> bool:
    """Whether `model` holds every source tensor at its shape, position tables apart (resampled)."""
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    return all(
        "pos_embed" in name or shapes.get(name) == tensor.shape
        for name, tensor in source.state.items()
        if not name.startswith(("head.", "vit.head."))
    )


def start_from_source(source: PretrainedSource, config: TrainConfig, classes: list[str]) -> StartingPoint:
    """The new model with the source's weights carried into it (TransferReport says how)."""
    img_size = config.data.img_size or source.preprocessing.img_size
    model, arch, report = build_from_source(source, classes, img_size=img_size, head=config.finetune.head)
    preprocessing = dataclasses.replace(source.preprocessing, img_size=img_size)
    return StartingPoint(arch, model, preprocessing, report)


def resume_start(run_dir: Path, config: TrainConfig) -> StartingPoint:
    """A resumed fine-tuning run's model and preprocessing, from its own config.json (the source may
    have gone since; the checkpoint holds the weights)."""
    record = json.loads((run_dir / "config.json").read_text())
    arch = config_from_dict(record["model"])
    preprocessing = Preprocessing.from_dict(record["preprocessing"])
    return StartingPoint(arch, build_model(arch), preprocessing, None)


def finetune_recipe(
    config: TrainConfig,
    model: nn.Module,
    train_images: int,
    img_size: int,
    training_gflops: float | None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """`config` with what the user left unset filled for fine-tuning `model`, and the plan's figures:
    under a budget, the passes over the data it buys fully fine-tuning (a probe costs one forward
    pass per image, about a third of one training pass), which choose the mode."""
    batch_size = batch_for_small_data(FINETUNE_BATCH, train_images)
    given = config.flat()
    batch_size = given["batch_size"] or batch_size
    choices = {**FINETUNE_RECIPE, "batch_size": batch_size}
    choices["lr"] = FINETUNE_LR * math.sqrt(batch_size / FINETUNE_LR_BATCH)
    estimate: dict[str, Any] = {}
    mode = config.finetune.finetune
    if config.optim.time_budget and training_gflops:
        per_image = 3 * forward_flops(model, img_size) / 1e9
        passes = (
            affordable_gflops_per_image(config.optim.time_budget, train_images, training_gflops) / per_image
        )
        estimate = {"training_gflops": round(training_gflops, 1), "full_passes": round(passes, 2)}
        mode = mode or ("lp-ft" if passes >= LPFT_MIN_PASSES else "probe")
    choices["finetune"] = mode or "lp-ft"
    if config.finetune.freeze_batch_norm is None:
        choices["freeze_batch_norm"] = batch_size < FREEZE_BATCH_NORM_BELOW and has_batch_norm(model)
    resolved = config.replace(**{k: v for k, v in choices.items() if given[k] is None})
    return resolved, estimate


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def freeze_batch_norm(model: nn.Module) -> int:
    """Keep every batch norm of `model` on its stored statistics while the rest trains (a forward
    pre-hook puts it in eval mode at each call: `model.train()` cannot undo it, and the saved weights are
    unchanged). Returns how many were frozen."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.register_forward_pre_hook(_use_stored_statistics)
    return len(norms)


def _use_stored_statistics(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    module.eval()


def plan_words(config: TrainConfig, estimate: dict[str, Any]) -> str:
    """The start line's account of the fine-tuning plan."""
    mode, epochs = config.finetune.finetune, config.finetune.probe_epochs
    what = {
        "probe": f"probe (the head alone, {epochs} epochs on features computed once)",
        "lp-ft": f"lp-ft (a {epochs}-epoch probe on cached features, then all weights)",
        "full": "full (every weight from the start)",
    }[mode]
    passes = (
        f", about {estimate['full_passes']:.1f} passes of full fine-tuning in the budget" if estimate else ""
    )
    decay = f", layer decay {config.finetune.layer_decay:g}" if config.finetune.layer_decay else ""
    frozen = ", batch-norm statistics frozen" if config.finetune.freeze_batch_norm else ""
    return f"fine-tuning: {what}{passes}{decay}{frozen}"
