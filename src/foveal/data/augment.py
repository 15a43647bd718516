"""Batched augmentation on uint8 tensors: random crop (zero-padded) and horizontal flip.

Working on whole batches of decoded tensors, instead of per-image PIL transforms, is what lets a
2-core CPU feed the model; randomness comes from `randomness.sample_uniform`, so each sample's
crop and flip are fixed by (seed, epoch, index).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foveal.data.randomness import sample_uniform

CROP_STREAM_Y, CROP_STREAM_X, FLIP_STREAM = 1, 2, 3


def crop_and_flip(
    images: torch.Tensor, indices: torch.Tensor, seed: int, epoch: int, *, padding: int, flip: bool
) -> torch.Tensor:
    """Random crops and flips of a batch.

    Args:
        images: uint8 (B, C, S, S).
        indices: int64 (B,) the samples' indices in the data set.
        padding: pixels of zero padding on each side before the S x S crop (4 for 32-px CIFAR).
        flip: whether to mirror half of the samples left-right.

    Returns:
        uint8 (B, C, S, S).
    """
    B, C, S, _ = images.shape
    padded = F.pad(images, (padding,) * 4) if padding else images  # (B, C, S+2p, S+2p)
    span = 2 * padding + 1
    offset_y = (sample_uniform(seed, epoch, CROP_STREAM_Y, indices) * span).long()  # (B,)
    offset_x = (sample_uniform(seed, epoch, CROP_STREAM_X, indices) * span).long()
    steps = torch.arange(S)
    rows = offset_y[:, None] + steps  # (B, S)
    cols = offset_x[:, None] + steps
    if flip:
        mirrored = sample_uniform(seed, epoch, FLIP_STREAM, indices) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    batch = torch.arange(B)[:, None, None]
    crops = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C): advanced dims first
    return crops.permute(0, 3, 1, 2).contiguous()
