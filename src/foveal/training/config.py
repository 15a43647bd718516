"""Training settings. The resolved TrainConfig is written to every run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from foveal.errors import ConfigError, suggest

BUDGET_VAL_IMAGES = 2_000  # per-epoch validation images under a time budget: ~1/5 of CIFAR-10's cost


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the recipe `foveal train digits` is measured with."""

    data: str = "digits"  # built-in name, data set root, or folder of class folders
    # None below: the recipe decides (training/recipe.py): fixed defaults with `epochs`, chosen for
    # the budget and the data with `time_budget`.
    model: str | None = None  # a name from `foveal models`
    epochs: int = 20  # digits: >= 98% held-out top-1 by epoch 20 (docs/benchmarks.md)
    time_budget: float | None = None  # seconds, command start to saved model; replaces `epochs`
    batch_size: int | None = None
    img_size: int | None = None  # None: the data's native size (see data.sources.default_img_size)
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float | None = None  # None: 1e-3 (peak, after warmup)
    weight_decay: float = 0.05  # AdamW's decoupled decay (Loshchilov & Hutter 2019); 0 for Adam
    warmup_epochs: float | None = None  # linear warmup, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1  # Szegedy et al. 2016; CCT trains with 0.1
    ema_decay: float | None = (
        None  # 0: off; else an EMA of the weights (training/ema.py) is validated and saved
    )
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    hflip: bool | None = None  # None: on, except for data sets where flips change the label (digits)
    crop_padding: int | None = None  # None: img_size // 8 (4 px for 32-px images)
    auto_augment: Literal["none", "trivial", "rand"] = "none"  # TrivialAugment / RandAugment (torchvision)
    random_erase: float = 0.0  # probability of erasing a random rectangle of each image (Zhong et al. 2020)
    mixup_alpha: float = 0.0  # MixUp (Zhang et al. 2018) Beta(alpha, alpha); 0: off
    cutmix_alpha: float = 0.0  # CutMix (Yun et al. 2019); with both on, each batch uses one of them
    val_fraction: float = 0.1  # held out per class when a single folder is auto-split
    split_manifest: str | None = None  # reuse the split of an earlier run (its split.json)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # CPU threads; None: all cores
    out: str = "runs"  # run folders are created inside: runs/train, runs/train2, ...
    name: str = "train"
    drop_path_rate: float | None = None  # None: the preset's
    eval_batch_size: int = 256
    tta_flip: bool = False  # validate, evaluate and predict on each image and its mirror, averaged
    epoch_val_images: int | None = None  # per-epoch validation on at most this many held-out images
    # (evenly spaced); None: all, or BUDGET_VAL_IMAGES under a time budget. The final evaluation uses all.
    workers: int = 0  # processes preparing batches ahead; 0 prepares them in the training process
    checkpoint_every_steps: int | None = None  # also save the full state every N steps (mid-epoch)
    checkpoint_every_minutes: float | None = 10.0  # ...and at least this often; always after each epoch
    keep_checkpoints: int = 2  # newest training-state checkpoints kept; older ones are deleted
    patience: int | None = None  # early stopping: stop after this many epochs without a better val top-1
    max_bad_steps: int = 5  # stop after this many non-finite steps in a row
    max_image_pixels: int = 89_478_485  # larger images are refused as decompression bombs (Pillow's limit)
    data_storage: Literal["auto", "memory", "disk"] = "auto"  # decoded images in memory or memory-mapped
    # from the decode cache on disk; auto: on disk when larger than half the available memory
    report: bool = True  # write report.html (foveal/report) into the run folder at the end

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (
                self.batch_size is None or self.batch_size >= 1,
                f"batch_size must be >= 1, got {self.batch_size}",
            ),
            (
                self.img_size is None or 4 <= self.img_size <= 4096,
                f"img_size must be between 4 and 4096 pixels, got {self.img_size}",
            ),
            (self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (
                self.optimizer in ("adamw", "adam"),
                f"optimizer must be 'adamw' or 'adam', got {self.optimizer!r}",
            ),
            (
                0.0 <= self.label_smoothing < 1.0,
                f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (
                self.warmup_epochs is None or self.warmup_epochs >= 0,
                f"warmup_epochs must be >= 0, got {self.warmup_epochs}",
            ),
            (0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (
                self.time_budget is None or self.time_budget > 0,
                f"time budget must be > 0 seconds, got {self.time_budget}",
            ),
            (
                self.auto_augment in ("none", "trivial", "rand"),
                f"auto_augment must be none, trivial or rand, got {self.auto_augment!r}",
            ),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (
                self.data_storage in ("auto", "memory", "disk"),
                f"data_storage must be auto, memory or disk, got {self.data_storage!r}",
            ),
            (0.0 <= self.random_erase <= 1.0, f"random_erase must be in [0, 1], got {self.random_erase}"),
            (
                self.mixup_alpha >= 0 and self.cutmix_alpha >= 0,
                f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha}, {self.cutmix_alpha}",
            ),
            (
                self.ema_decay is None or 0.0 <= self.ema_decay < 1.0,
                f"ema_decay must be in [0, 1), got {self.ema_decay}",
            ),
            (
                self.epoch_val_images is None or self.epoch_val_images >= 1,
                f"epoch_val_images must be >= 1, got {self.epoch_val_images}",
            ),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (
                self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}",
            ),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (
                self.patience is None or self.time_budget is None,
                "patience (early stopping) does not combine with a time budget: the budget's schedule "
                "ends annealed and its final model is the one kept; use one or the other.",
            ),
            (self.max_bad_steps >= 1, f"max_bad_steps must be >= 1, got {self.max_bad_steps}"),
            (self.max_image_pixels >= 1, f"max_image_pixels must be >= 1, got {self.max_image_pixels}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def epoch_val_limit(self) -> int | None:
        if self.epoch_val_images is not None:
            return self.epoch_val_images
        return BUDGET_VAL_IMAGES if self.time_budget else None

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 1e-3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_train_config(**options: Any) -> TrainConfig:
    """A TrainConfig from keyword options; a misspelled option raises ConfigError with a suggestion."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in options:
        if key not in known:
            raise ConfigError(f"unknown training option {key!r}.{suggest(key, known)}")
    return TrainConfig(**options)


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
