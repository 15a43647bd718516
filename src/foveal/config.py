"""Training settings, typed and grouped: data, model, optimisation, augmentation, checkpoints, run, tracking.

Each field is declared once, here, with its default, its check and its help text; the `foveal
train` options are generated from these fields (cli/options.py), and the resolved TrainConfig is
written to every run folder. Every field also has a flat name, unique across the groups (the
field's own name; `model` and `data` for the two that differ), which the Python API, the command
line and config files all use: `foveal.train(data="digits", epochs=5, lr=3e-3)`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from foveal.errors import ConfigError, suggest

# Muon's lr for the conv filters at any batch (its steps are rotations of this angle, training/muon.py):
# airbench's Muon run takes 0.24 at batch 2,000; measured at batch 256 in docs/benchmarks.md (#12).
MUON_LR = 0.08
# Muon for the attention blocks' matrices: off (0); at 3 minutes 0.01-0.1 measured no better than SGD
# (docs/benchmarks.md, #12).
MUON_MATRIX_LR = 0.0
BUDGET_VAL_IMAGES = 2_000  # per-epoch validation images under a time budget: ~1/5 of CIFAR-10's cost
PANELS = {  # group -> the help panel its options are listed under
    "data": "Data",
    "model": "Model",
    "optim": "Optimisation",
    "finetune": "Fine-tuning",
    "augment": "Augmentation",
    "checkpoint": "Checkpoints",
    "run": "Run",
    "tracking": "Tracking",
}


def option(default: Any, help: str, *, summary: str | None = None, **cli: Any) -> Any:
    """A settings field with its command-line help: `summary`, one line for --help (default: the
    first sentence of `help`), and `help`, the whole explanation, for docs/options.md. `cli` keys:
    flag (the option's name when it is not the field's), short (a one-letter alias, "-k"),
    negatable (False: a bool is a switch with no --no- form), parse ("duration": the text 90s, 10m,
    1.5h), metavar, flat (see below)."""
    summary = summary if summary is not None else first_sentence(help)
    return field(default=default, metadata={"help": help, "summary": summary, **cli})


def first_sentence(text: str) -> str:
    """The text up to its first full stop followed by a space (or all of it); "e.g." and "et al."
    end no sentence."""
    match = re.search(r"(?<!e\.g)(?<!i\.e)(?<! al)\. ", text)
    return text if match is None else text[: match.start() + 1]


# None below means "the recipe decides" (training/recipe.py): fixed defaults with `epochs`, chosen
# for the budget and the data with `time_budget`.


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are read."""

    source: str = option(
        "digits",
        "Built-in name (digits, cifar10), a root with train/ and val/ (or test/), "
        "a folder of class folders, or a table of labels (a .csv or .jsonl file of file_name,label, "
        "or a folder holding metadata.csv).",
        flat="data",
        summary="A built-in name, data folders or a label table.",
    )
    img_size: int | None = option(
        None,
        "Input side in pixels [default: the data's median shorter side; with --time or on photos, "
        "lowered when the plan is short for it].",
        summary="Input side in pixels [default: the data's].",
    )
    val_fraction: float = option(
        0.1,
        "Share of each class held out when a single folder is auto-split.",
        summary="Share held out by an auto-split.",
    )
    split_manifest: str | None = option(
        None,
        "Reuse the train/val split of an earlier run (its split.json).",
        summary="Reuse an earlier run's train/val split.json.",
    )
    max_image_pixels: int = option(
        89_478_485,
        "Refuse larger images as decompression bombs (Pillow's limit).",
        summary="Refuse larger images.",
    )
    data_storage: Literal["auto", "memory", "disk"] = option(
        "auto",
        "Decoded images in memory, or memory-mapped from the decode cache (auto: disk when "
        "larger than half the available memory).",
        summary="Decoded images in memory or memory-mapped.",
    )
    workers: int = option(
        0,
        "Processes preparing batches ahead (0: in the training process).",
        summary="Batch-preparing processes (0: none).",
    )

    def __post_init__(self) -> None:
        check(
            (
                self.img_size is None or 4 <= self.img_size <= 4096,
                f"img_size must be between 4 and 4096 pixels, got {self.img_size}",
            ),
            (0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (self.max_image_pixels >= 1, f"max_image_pixels must be >= 1, got {self.max_image_pixels}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
        )


@dataclass(frozen=True)
class ModelChoice:
    """Which architecture to train."""

    preset: str | None = option(
        None,
        "Model preset, see `foveal models` [default: foveal-small; with --time, the recipe's choice for the "
        "budget; on photos (images of 64 px and more) without --time, the same ladder's choice for --epochs "
        "in about 10 minutes].",
        flat="model",
        summary="Model preset, see `foveal models`.",
    )
    drop_path_rate: float | None = option(
        None,
        "Stochastic depth rate [default: the preset's].",
    )


@dataclass(frozen=True)
class OptimConfig:
    """How long and how the weights are updated."""

    epochs: int = option(20, "Passes over the training images.")  # digits: >= 98% by epoch 20
    time_budget: float | None = option(
        None,
        "Train for a wall-clock budget instead of --epochs: 90s, 10m, 1.5h.",
        flag="--time",
        parse="duration",
        metavar="DURATION",
        summary="Train for a time, not --epochs: 90s, 10m, 1.5h.",
    )
    batch_size: int | None = option(
        None,
        "Images per training step [default: 64; with --time or on photos, the recipe's; halved while a "
        "step would not fit in memory].",
        summary="Images per training step [default: 64].",
    )
    optimizer: Literal["adamw", "adam", "sgd", "muon"] | None = option(
        None,
        "adamw, adam, sgd (Nesterov momentum 0.9, as the fastest CIFAR-10 CNN recipes use), or muon "
        "(the hybrid and airbench models: their batch-normed conv filters orthogonalised by Muon at "
        "--muon-lr, the rest sgd) [default: adamw; with --time or on photos, muon for the hybrid and "
        "airbench models].",
        summary="The optimizer [default: adamw].",
    )
    muon_lr: float = option(
        MUON_LR,
        "Peak learning rate of the conv filters under --optimizer muon.",
        summary="Peak lr of muon's conv filters.",
    )
    muon_matrix_lr: float = option(
        MUON_MATRIX_LR,
        "Peak learning rate of the attention blocks' weight matrices under --optimizer muon, which then "
        "steps them too; 0 leaves them to its sgd part.",
        summary="Muon's attention-matrix lr (0: off).",
    )
    lr: float | None = option(
        None,
        "Peak learning rate, after warmup [default: 1e-3; with --time or on photos, the recipe's].",
        summary="Peak learning rate [default: 1e-3].",
    )
    weight_decay: float | None = option(
        None,
        "Weight decay of the weight matrices [default: 0.05 with adamw (decoupled, Loshchilov & Hutter "
        "2019), 5e-4 with sgd (L2)].",
        summary="Weight decay [default: 0.05 adamw, 5e-4 sgd].",
    )
    bias_lr_scale: float | None = option(
        None,
        "Learning-rate multiplier for batch-norm biases (their weight decay divided by it, so the decay "
        "stays the same size) [default: 1; airbench's 64 measured no better, docs/benchmarks.md].",
        summary="Batch-norm biases' lr multiplier [default: 1].",
    )
    warmup_epochs: float | None = option(
        None,
        "Linear warmup before cosine decay [default: 3; with --time or on photos, 0.3].",
        summary="Linear warmup before the decay [default: 3].",
    )
    lr_decay: Literal["cosine", "linear"] | None = option(
        None,
        "After warmup: cosine decay to lr x --min-lr-ratio, or linear decay to zero [default: cosine; "
        "with --time or on photos, linear for the hybrid and airbench models].",
        summary="The decay after warmup [default: cosine].",
    )
    min_lr_ratio: float = option(
        0.01, "The cosine decay ends at lr times this.", summary="Cosine decay ends at lr times this."
    )
    label_smoothing: float | None = option(
        None,
        "Cross-entropy label smoothing (Szegedy et al. 2016) [default: 0.1, as CCT; with --time or on "
        "photos, 0.2 for the hybrid and airbench models, as airbench].",
        summary="Label smoothing [default: 0.1].",
    )
    lookahead: bool | None = option(
        None,
        "Lookahead (Zhang et al. 2019) as airbench schedules it: a slow copy of the weights, synced every "
        "5 steps from a quarter of the run on, held to a longer average as the run ends, and kept at the "
        "end [default: off; measured no better at 10 minutes, docs/benchmarks.md].",
        summary="Lookahead, as airbench [default: off].",
    )
    ema_decay: float | None = option(
        None,
        "Validate and save an EMA of the weights with this decay, e.g. 0.999 (0: off) [default: off].",
        summary="Keep an EMA of the weights, e.g. 0.999.",
    )
    grad_clip: float = option(
        1.0,
        "Largest global gradient norm (0: no clipping).",
        summary="Largest gradient norm (0: off).",
    )
    patience: int | None = option(
        None,
        "Stop after this many epochs without a better val top-1.",
        summary="Stop after N epochs without a better top-1.",
    )
    max_bad_steps: int = option(
        5,
        "Stop after this many non-finite steps in a row.",
        summary="Stop at N non-finite steps in a row.",
    )

    def __post_init__(self) -> None:
        check(
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (
                self.time_budget is None or self.time_budget > 0,
                f"time budget must be > 0 seconds, got {self.time_budget}",
            ),
            (
                self.batch_size is None or self.batch_size >= 1,
                f"batch_size must be >= 1, got {self.batch_size}",
            ),
            (
                self.optimizer in (None, "adamw", "adam", "sgd", "muon"),
                f"optimizer must be adamw, adam, sgd or muon, got {self.optimizer!r}",
            ),
            (self.muon_lr > 0, f"muon_lr must be > 0, got {self.muon_lr}"),
            (self.muon_matrix_lr >= 0, f"muon_matrix_lr must be >= 0, got {self.muon_matrix_lr}"),
            (
                self.weight_decay is None or self.weight_decay >= 0,
                f"weight_decay must be >= 0, got {self.weight_decay}",
            ),
            (
                self.lr_decay in (None, "cosine", "linear"),
                f"lr_decay must be cosine or linear, got {self.lr_decay!r}",
            ),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (
                self.bias_lr_scale is None or self.bias_lr_scale > 0,
                f"bias_lr_scale must be > 0, got {self.bias_lr_scale}",
            ),
            (
                self.warmup_epochs is None or self.warmup_epochs >= 0,
                f"warmup_epochs must be >= 0, got {self.warmup_epochs}",
            ),
            (
                self.label_smoothing is None or 0.0 <= self.label_smoothing < 1.0,
                f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (
                self.ema_decay is None or 0.0 <= self.ema_decay < 1.0,
                f"ema_decay must be in [0, 1), got {self.ema_decay}",
            ),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (
                self.patience is None or self.time_budget is None,
                "patience (early stopping) does not combine with a time budget: the budget's schedule "
                "ends annealed and its final model is the one kept; use one or the other.",
            ),
            (self.max_bad_steps >= 1, f"max_bad_steps must be >= 1, got {self.max_bad_steps}"),
        )

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 1e-3


FINETUNE_MODES: tuple[str, ...] = ("probe", "lp-ft", "full")
HEADS: tuple[str, ...] = ("source", "attention")


@dataclass(frozen=True)
class FinetuneConfig:
    """Starting from learned weights (training/transfer.py, training/probe.py)."""

    init_from: str | None = option(
        None,
        "Start from these weights instead of random ones: a Foveal run folder, bundle or .safetensors "
        "(any family), a timm ViT / DeiT folder (config.json + model.safetensors) or weights file, or a "
        "hub id such as hf-hub:timm/deit_tiny_patch16_224.fb_in1k (downloaded once into the Hugging Face "
        "cache; HF_HUB_OFFLINE=1 reads only the cache). The source's architecture and preprocessing are "
        "kept; its head is replaced for your classes.",
        metavar="SOURCE",
        summary="Start from a saved model or a public ViT.",
    )
    finetune: Literal["probe", "lp-ft", "full"] | None = option(
        None,
        "With --init-from: probe (train only the head, on features computed once per image), lp-ft (the "
        "probe, then every weight; Kumar et al. 2022) or full (every weight from the start) [default: "
        "lp-ft; with --time, probe when the budget buys fewer than 3 passes].",
        metavar="MODE",
        summary="probe, lp-ft or full [default: lp-ft].",
    )
    head: Literal["source", "attention"] | None = option(
        None,
        "A public ViT's head: source (its own class-token or mean pooling) or attention (Foveal's "
        "attention pooling, new, trained on your data) [default: source].",
        summary="A public ViT's head: source or attention.",
    )
    layer_decay: float | None = option(
        None,
        "Layer-wise learning-rate decay (BEiT): the last layer learns at the lr, each one below at this "
        "times the one above, e.g. 0.75 [default: off].",
        summary="Layer-wise lr decay, e.g. 0.75 [default: off].",
    )
    probe_epochs: int = option(
        100,
        "Epochs of the probe (probe, lp-ft) over the cached features: seconds, whatever the model.",
        summary="Probe epochs on cached features.",
    )
    freeze_batch_norm: bool | None = option(
        None,
        "Keep the source's batch-norm statistics while fine-tuning [default: on when a batch has "
        "fewer than 32 images].",
        summary="Keep the source's batch-norm statistics.",
    )

    def __post_init__(self) -> None:
        check(
            (
                self.finetune is None or self.finetune in FINETUNE_MODES,
                f"finetune must be one of {', '.join(FINETUNE_MODES)}, got {self.finetune!r}",
            ),
            (self.head is None or self.head in HEADS, f"head must be source or attention, got {self.head!r}"),
            (
                self.layer_decay is None or 0.0 < self.layer_decay <= 1.0,
                f"layer_decay must be in (0, 1], got {self.layer_decay}",
            ),
            (self.probe_epochs >= 1, f"probe_epochs must be >= 1, got {self.probe_epochs}"),
            (
                self.init_from is not None
                or (self.finetune is None and self.head is None and self.layer_decay is None),
                "--finetune, --head and --layer-decay say how to start from learned weights; give the "
                "weights with --init-from SOURCE.",
            ),
        )


@dataclass(frozen=True)
class AugmentConfig:
    """What each training image goes through, and the views a prediction averages."""

    hflip: bool | None = option(
        None,
        "Random horizontal flips [default: on, off where a flip changes the label (digits)].",
        summary="Random horizontal flips [default: on].",
    )
    alternate_flips: bool | None = option(
        None,
        "Derandomised flips (Jordan 2024): each image is mirrored at random in the first epoch, then "
        "every other epoch, so consecutive epochs see both sides [default: off; with --time or on "
        "photos, on for the hybrid and airbench models].",
        summary="Derandomised flips (Jordan 2024) [default: off].",
    )
    crop_padding: int | None = option(
        None,
        "Pixels of padding for random crops [default: img_size // 8].",
        summary="Random crops' padding [default: img_size // 8].",
    )
    auto_augment: Literal["none", "trivial", "rand"] = option(
        "none",
        "TrivialAugment (trivial) or RandAugment (rand), from torchvision.",
        summary="TrivialAugment or RandAugment.",
    )
    random_erase: float = option(
        0.0,
        "Probability of erasing a random rectangle of each image (Zhong et al. 2020).",
        summary="Probability of random erasing.",
    )
    mixup_alpha: float = option(
        0.0,
        "MixUp Beta(alpha, alpha) (Zhang et al. 2018); 0: off.",
        summary="MixUp Beta(alpha, alpha); 0: off.",
    )
    cutmix_alpha: float = option(
        0.0,
        "CutMix Beta(alpha, alpha) (Yun et al. 2019); 0: off. With both on, each batch uses one.",
        summary="CutMix Beta(alpha, alpha); 0: off.",
    )
    tta_flip: bool | None = option(
        None,
        "Validate, evaluate and predict on each image and its mirror, averaged "
        "(saved with the model as its test-time views) [default: off; with --time or on photos, on for "
        "the hybrid and airbench models].",
        summary="Test-time views: image, mirror [default: off].",
    )
    tta_shift: bool = option(
        False,
        "Like --tta-flip, and also the image and its mirror shifted one pixel up-left and "
        "down-right: six views averaged, as airbench does (Jordan 2024).",
        summary="Six test-time views (flip, shifts).",
    )

    def __post_init__(self) -> None:
        check(
            (
                self.auto_augment in ("none", "trivial", "rand"),
                f"auto_augment must be none, trivial or rand, got {self.auto_augment!r}",
            ),
            (0.0 <= self.random_erase <= 1.0, f"random_erase must be in [0, 1], got {self.random_erase}"),
            (
                self.mixup_alpha >= 0 and self.cutmix_alpha >= 0,
                f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha}, {self.cutmix_alpha}",
            ),
            (
                self.crop_padding is None or self.crop_padding >= 0,
                f"crop_padding must be >= 0, got {self.crop_padding}",
            ),
        )

    @property
    def test_time_views(self) -> str:
        """The views a model trained with these settings is validated and saved with."""
        if self.tta_shift:
            return "flip-shift"
        return "flip" if self.tta_flip else "none"


@dataclass(frozen=True)
class CheckpointConfig:
    """When the full training state is saved for --resume."""

    checkpoint_every_steps: int | None = option(
        None,
        "Also save the full training state every N steps.",
        summary="Also save the training state every N steps.",
    )
    checkpoint_every_minutes: float | None = option(
        10.0,
        "Save the full training state at least this often (and after every epoch).",
        summary="Save the training state this often.",
    )
    keep_checkpoints: int = option(
        2,
        "Newest training-state checkpoints kept; older ones are deleted.",
        summary="Training-state checkpoints kept.",
    )

    def __post_init__(self) -> None:
        check(
            (
                self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}",
            ),
            (self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
        )


@dataclass(frozen=True)
class RunConfig:
    """Where the run goes and what it runs on."""

    out: str = option(
        "runs", "Folder for run folders (runs/train, runs/train2, ...).", summary="Folder for run folders."
    )
    name: str = option("train", "Run folder name.")
    seed: int = option(0, "Random seed: same seed, same result on a CPU.", summary="Random seed.")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps.")
    threads: int | None = option(
        None,
        "CPU threads [default: OMP_NUM_THREADS where set, else every core this process may run on].",
        summary="CPU threads [default: OMP_NUM_THREADS, all cores].",
    )
    precision: Literal["auto", "bf16", "fp32"] = option(
        "auto",
        "Training arithmetic: bf16 autocast or fp32. auto: bf16 where the hardware has bf16 "
        "instructions (a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), else fp32.",
        summary="Training arithmetic (auto: bf16 if fast).",
    )
    eval_batch_size: int = option(
        256,
        "Images per batch when validating (lower it for large images).",
        summary="Images per validation batch.",
    )
    epoch_val_images: int | None = option(
        None,
        "Validate each epoch on at most this many evenly spaced "
        "held-out images [default: all; 2,000 with --time, in one view each].",
        summary="Validate each epoch on at most N images.",
    )
    report: bool = option(
        True, "Write report.html into the run folder at the end.", summary="Write report.html at the end."
    )

    def __post_init__(self) -> None:
        check(
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (
                self.epoch_val_images is None or self.epoch_val_images >= 1,
                f"epoch_val_images must be >= 1, got {self.epoch_val_images}",
            ),
        )


TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow")  # what --log can name (foveal/tracking/)


@dataclass(frozen=True)
class TrackingConfig:
    """Where the run's figures go besides results.csv: TensorBoard, MLflow (docs/tracking.md)."""

    log: tuple[str, ...] = option(
        (),
        "Also record the run with tensorboard (into RUN/tensorboard) or mlflow; give it once per "
        "logger. Needs `pip install 'foveal[tensorboard]'` or `'foveal[mlflow]'`.",
        summary="Also log to tensorboard or mlflow (repeatable).",
        metavar="tensorboard|mlflow",
    )
    mlflow_uri: str | None = option(
        None,
        "MLflow tracking server or store, e.g. http://127.0.0.1:5000 [default: $MLFLOW_TRACKING_URI, "
        "else a local store in the run folder, RUN/mlflow.db].",
        summary="MLflow URI [default: $MLFLOW_TRACKING_URI, local].",
    )
    mlflow_experiment: str = option(
        "foveal",
        "MLflow experiment the run is recorded in (created when missing).",
        summary="MLflow experiment name.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.log, str):  # foveal.train(log="tensorboard"): one logger
            object.__setattr__(self, "log", (self.log,))
        unknown = [name for name in self.log if name not in TRACKERS]
        check(
            (
                not unknown,
                f"--log takes {' or '.join(TRACKERS)}, got {', '.join(map(repr, unknown))}",
            ),
            (bool(self.mlflow_experiment), "mlflow_experiment must be a non-empty name"),
        )


GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelChoice,
    "optim": OptimConfig,
    "finetune": FinetuneConfig,
    "augment": AugmentConfig,
    "checkpoint": CheckpointConfig,
    "run": RunConfig,
    "tracking": TrackingConfig,
}


@dataclass(frozen=True)
class ConfigField:
    """One setting: its group, its field in the group, its flat name and the field itself."""

    group: str
    name: str
    flat: str
    field: dataclasses.Field
    type: Any  # the resolved annotation, e.g. int | None or Literal["adamw", "adam"]

    @property
    def default(self) -> Any:
        return self.field.default

    @property
    def help(self) -> str:
        """The whole explanation (docs/options.md)."""
        return self.field.metadata["help"]

    @property
    def summary(self) -> str:
        """One line for --help."""
        return self.field.metadata.get("summary") or first_sentence(self.help)

    @property
    def panel(self) -> str | None:
        """The --help panel the option is listed under (None: the command's Options)."""
        return PANELS.get(self.group)


def config_fields() -> list[ConfigField]:
    """Every setting of TrainConfig, group by group, in declaration order."""
    return [f for group, cls in GROUPS.items() for f in settings_fields(cls, group)]


def settings_fields(cls: type, group: str = "") -> list[ConfigField]:
    """The fields of the settings dataclass `cls` that have a help text (made by `option`), in
    declaration order: what a command's options are generated from (cli/options.py)."""
    hints = typing.get_type_hints(cls)
    return [
        ConfigField(group, f.name, f.metadata.get("flat", f.name), f, hints[f.name])
        for f in dataclasses.fields(cls)
        if "help" in f.metadata
    ]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the recipe `foveal train digits` is measured with."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelChoice = field(default_factory=ModelChoice)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def epoch_val_limit(self) -> int | None:
        """Per-epoch validation images: as set, else all, or BUDGET_VAL_IMAGES under a time budget."""
        if self.run.epoch_val_images is not None:
            return self.run.epoch_val_images
        return BUDGET_VAL_IMAGES if self.optim.time_budget else None

    @property
    def epoch_val_views(self) -> str:
        """Test-time views of the per-epoch validation: the model's own (`AugmentConfig.test_time_views`,
        which select the best epoch), or under a time budget one view: the budget keeps the last epoch,
        so its validations only show the progress, and the views' cost goes to the final evaluation,
        which takes the model's views (six cost 2.9x one's time: docs/benchmarks.md)."""
        return "none" if self.optim.time_budget else self.augment.test_time_views

    def to_dict(self) -> dict[str, Any]:
        """{group: {field: value}}, JSON-ready: what config.json records and `from_dict` reads."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """{flat name: value} of every setting."""
        return {f.flat: getattr(getattr(self, f.group), f.name) for f in config_fields()}

    def replace(self, **options: Any) -> TrainConfig:
        """This config with `options` (flat names) changed; an unknown name raises ConfigError."""
        return make_train_config(**{**self.flat(), **options})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Read `to_dict`'s grouped layout, or the flat layout of Foveal 0.1.0's config.json; unknown
        keys raise ConfigError naming close matches."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key in GROUPS and isinstance(value, dict):
                by_name = {f.name: f.flat for f in config_fields() if f.group == key}
                for name, item in value.items():
                    if name not in by_name:
                        raise ConfigError(f"unknown {key} option {name!r}.{suggest(name, by_name)}")
                    flat[by_name[name]] = item
            else:
                flat[key] = value
        return make_train_config(**flat)


def make_train_config(**options: Any) -> TrainConfig:
    """A TrainConfig from flat options (e.g. data="digits", epochs=5); a misspelled option raises
    ConfigError with a suggestion, and a bad value one that says what was expected."""
    fields = {f.flat: f for f in config_fields()}
    groups: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for key, value in options.items():
        if key not in fields:
            raise ConfigError(f"unknown training option {key!r}.{suggest(key, fields)}")
        f = fields[key]
        groups[f.group][f.name] = _coerce(value, f)
    try:
        return TrainConfig(**{group: GROUPS[group](**values) for group, values in groups.items()})
    except TypeError as error:
        raise ConfigError(f"bad training options: {error}") from None


def load_config_file(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON or YAML file: the grouped layout, a flat one, or a run folder's
    config.json as it is (its "train" entry is used)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path} ({error.strerror}).") from None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(
            f"{path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({error})."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should hold a mapping of settings, got {type(data).__name__}.")
    if isinstance(data.get("train"), dict):  # a run folder's config.json
        data = data["train"]
    return TrainConfig.from_dict(data)


def parse_duration(text: str) -> float:
    """Seconds from '90s', '10m', '1.5h' or a plain number of seconds; ConfigError otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise ConfigError(f"a duration looks like 90s, 10m or 1.5h; got {text!r}") from None
    if seconds <= 0:
        raise ConfigError(f"a duration must be positive, got {text!r}")
    return seconds


def _coerce(value: Any, f: ConfigField) -> Any:
    """JSON lists become tuples; a duration given as text is parsed; a Path is kept as text (the
    config is written as JSON)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if f.field.metadata.get("parse") == "duration" and isinstance(value, str):
        return parse_duration(value)
    return tuple(value) if isinstance(value, list) else value


def check(*checks: tuple[bool, str]) -> None:
    """A ConfigError with the message of the first check that fails: (holds?, what to say)."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
