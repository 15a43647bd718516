"""The batches of one epoch, made in the training process or ahead of it by worker processes.

Batch i of epoch e holds the samples order[i*B:(i+1)*B] of `epoch_order(seed, e)`, augmented by
`crop_and_flip` with per-sample randomness: it is the same batch whichever process makes it and
whenever, so worker count and resuming mid-epoch do not change a bit of training.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from foveal.data.augment import crop_and_flip
from foveal.data.imageset import ImageSet
from foveal.data.randomness import epoch_order


class EpochBatches(Dataset):
    """Map-style data set whose item i is batch i of an epoch: (uint8 images (B, 3, S, S), labels (B,))."""

    def __init__(
        self, images: ImageSet, epoch: int, seed: int, batch_size: int, padding: int, flip: bool
    ) -> None:
        self.images, self.epoch, self.seed = images, epoch, seed
        self.batch_size, self.padding, self.flip = batch_size, padding, flip
        self.order = epoch_order(seed, epoch, len(images))

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.order[step * self.batch_size : (step + 1) * self.batch_size]
        batch = crop_and_flip(
            self.images.images[indices], indices, self.seed, self.epoch, padding=self.padding, flip=self.flip
        )
        return batch, self.images.labels[indices]


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
    )
