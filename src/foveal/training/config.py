"""Training settings. The resolved TrainConfig is written to every run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from foveal.errors import ConfigError, suggest


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the recipe `foveal train digits` is measured with."""

    data: str = "digits"  # built-in name, data set root, or folder of class folders
    model: str = "foveal-small"  # a name from `foveal models`
    epochs: int = 20  # digits: >= 98% held-out top-1 by epoch 20 (docs/benchmarks.md)
    time_budget: float | None = None  # seconds, command start to saved model; replaces `epochs`
    batch_size: int = 64
    img_size: int | None = None  # None: the data's native size (see data.sources.default_img_size)
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float | None = None  # None: 1e-3 (peak, after warmup)
    weight_decay: float = 0.05  # AdamW's decoupled decay (Loshchilov & Hutter 2019); 0 for Adam
    warmup_epochs: float = 3.0  # linear warmup, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1  # Szegedy et al. 2016; CCT trains with 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    hflip: bool | None = None  # None: on, except for data sets where flips change the label (digits)
    crop_padding: int | None = None  # None: img_size // 8 (4 px for 32-px images)
    val_fraction: float = 0.1  # held out per class when a single folder is auto-split
    split_manifest: str | None = None  # reuse the split of an earlier run (its split.json)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # CPU threads; None: all cores
    out: str = "runs"  # run folders are created inside: runs/train, runs/train2, ...
    name: str = "train"
    drop_path_rate: float | None = None  # None: the preset's
    eval_batch_size: int = 256
    workers: int = 0  # processes preparing batches ahead; 0 prepares them in the training process
    checkpoint_every_steps: int | None = None  # also save the full state every N steps (mid-epoch)
    checkpoint_every_minutes: float | None = 10.0  # ...and at least this often; always after each epoch
    keep_checkpoints: int = 2  # newest training-state checkpoints kept; older ones are deleted
    patience: int | None = None  # early stopping: stop after this many epochs without a better val top-1
    max_bad_steps: int = 5  # stop after this many non-finite steps in a row
    max_image_pixels: int = 89_478_485  # larger images are refused as decompression bombs (Pillow's limit)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
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
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (
                self.time_budget is None or self.time_budget > 0,
                f"time budget must be > 0 seconds, got {self.time_budget}",
            ),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (
                self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}",
            ),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.max_bad_steps >= 1, f"max_bad_steps must be >= 1, got {self.max_bad_steps}"),
            (self.max_image_pixels >= 1, f"max_image_pixels must be >= 1, got {self.max_image_pixels}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

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
