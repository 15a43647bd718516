"""The batches of one epoch, made in the training process or ahead of it by worker processes.

Batch i of epoch e holds the samples order[i*B:(i+1)*B] of `epoch_order(seed, e)`, augmented by
`crop_and_flip` with per-sample randomness: it is the same batch whichever process makes it and
whenever, so worker count and resuming mid-epoch do not change a bit of training.

Under torchrun the batch size is the global batch: rank r of W takes the contiguous slice
`rank_slice(r, W, len(batch))` of each batch, so the images of step t, and the randomness each gets,
do not depend on how many processes share the step.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from foveal.config import TrainConfig
from foveal.data.augment import auto_augment, crop_and_flip, mix_batch, random_erase
from foveal.data.imageset import ImageSet
from foveal.data.randomness import epoch_order, mix

MIX_STREAM, AUTO_AUGMENT_STREAM = 0x313C, 0x7A7A  # per-batch random streams


@dataclass(frozen=True)
class Augmentation:
    """What is done to each training batch, beyond normalisation."""

    padding: int  # zero padding before the random crop (0: no crop)
    flip: bool  # random horizontal flips
    alternate_flips: bool = False  # each image's flip inverted every other epoch (augment.crop_and_flip)
    auto_augment: str = "none"  # "trivial" (TrivialAugment), "rand" (RandAugment) or "none"
    erase: float = 0.0  # probability of random erasing per image
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weights; 0: off
    cutmix_alpha: float = 0.0

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def augmentation_for(config: TrainConfig, img_size: int, flip_safe: bool) -> Augmentation:
    """The run's augmentation: the config's, with its defaults resolved for `img_size`-px images
    (crop padding an eighth of the side) and the data (flips only where `flip_safe`)."""
    return Augmentation(
        padding=config.augment.crop_padding if config.augment.crop_padding is not None else img_size // 8,
        flip=flip_safe if config.augment.hflip is None else config.augment.hflip,
        alternate_flips=config.augment.alternate_flips,
        auto_augment=config.augment.auto_augment,
        erase=config.augment.random_erase,
        mixup_alpha=config.augment.mixup_alpha,
        cutmix_alpha=config.augment.cutmix_alpha,
    )


def rank_slice(rank: int, world_size: int, batch: int) -> slice:
    """Rank `rank`'s contiguous share of a global batch of `batch` samples: equal shares when
    `world_size` divides it, else (an epoch's short last batch) shares that differ by one."""
    return slice(rank * batch // world_size, (rank + 1) * batch // world_size)


class EpochBatches(Dataset):
    """Map-style data set whose item i is batch i of an epoch (this rank's slice of it, with `part`):
    uint8 images (b, 3, S, S) and targets, int64 labels (b,), or float32 (b, classes) label mixtures
    when MixUp / CutMix are on."""

    def __init__(
        self,
        images: ImageSet,
        epoch: int,
        seed: int,
        batch_size: int,
        augmentation: Augmentation,
        part: tuple[int, int] = (0, 1),  # (rank, world size)
    ) -> None:
        self.images, self.epoch, self.seed = images, epoch, seed
        self.batch_size, self.augmentation, self.part = batch_size, augmentation, part
        self.order = epoch_order(seed, epoch, len(images))

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def global_size(self, step: int) -> int:
        """Samples in batch `step` over all ranks (B, less in an epoch's last batch)."""
        return min(self.batch_size, len(self.images) - step * self.batch_size)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.order[step * self.batch_size : (step + 1) * self.batch_size]
        share = rank_slice(*self.part, len(indices))
        if self.augmentation.auto_augment != "none" or self.augmentation.mixes:
            # Their draws are per batch (a stream per step, mixing partners across it): the whole
            # batch is made on every rank and sliced, so that it is the batch one process makes.
            images, targets = self._make(step, indices)
            return images[share], targets[share]
        return self._make(step, indices[share])  # per-sample draws alone: only this rank's share

    def _make(self, step: int, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aug, labels = self.augmentation, self.images.labels[indices]
        batch = crop_and_flip(
            self.images.images[indices],
            indices,
            self.seed,
            self.epoch,
            padding=aug.padding,
            flip=aug.flip,
            alternate_flips=aug.alternate_flips,
        )
        if aug.auto_augment != "none":
            stream = mix(self.seed, self.epoch, AUTO_AUGMENT_STREAM, step)
            batch = auto_augment(batch, aug.auto_augment, stream)
        if aug.erase > 0:
            batch = random_erase(batch, indices, self.seed, self.epoch, probability=aug.erase)
        if not aug.mixes:
            return batch, labels
        rng = np.random.default_rng(mix(self.seed, self.epoch, MIX_STREAM, step))
        return mix_batch(
            batch,
            labels,
            len(self.images.classes),
            rng,
            mixup_alpha=aug.mixup_alpha,
            cutmix_alpha=aug.cutmix_alpha,
        )


def epoch_loader(batches: EpochBatches, start_step: int, workers: int, pin_memory: bool) -> DataLoader:
    """Batches start_step, start_step+1, ... of the epoch, in order.

    The loader gets its own generator so creating it never draws from the global torch RNG,
    which dropout and stochastic depth use: an uninterrupted and a resumed run stay in step.
    """
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(start_step, len(batches)),
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_ignore_ctrl_c,
    )


def _ignore_ctrl_c(_: int) -> None:
    """A worker ignores SIGINT: a Ctrl-C reaches every process of the terminal's group, and the
    training process stops after its step (training/interrupt.py), reading batches until then."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
