"""Batched augmentation on uint8 tensors: random crop (zero-padded), horizontal flip, random erasing,
MixUp and CutMix.

Working on whole batches of decoded tensors, instead of per-image PIL transforms, is what lets a
2-core CPU feed the model; randomness comes from `randomness.sample_uniform`, so each sample's
crop and flip are fixed by (seed, epoch, index).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from foveal.data.randomness import sample_uniform

CROP_STREAM_Y, CROP_STREAM_X, FLIP_STREAM = 1, 2, 3
ERASE_STREAM = 4  # streams 4..8: area, aspect, top, left, whether


def crop_and_flip(
    images: torch.Tensor,
    indices: torch.Tensor,
    seed: int,
    epoch: int,
    *,
    padding: int,
    flip: bool,
    alternate_flips: bool = False,
) -> torch.Tensor:
    """Random crops and flips of a batch.

    Args:
        images: uint8 (B, C, S, S).
        indices: int64 (B,) the samples' indices in the data set.
        padding: pixels of zero padding on each side before the S x S crop (4 for 32-px CIFAR).
        flip: whether to mirror half of the samples left-right.
        alternate_flips: derandomised flips (Jordan 2024): the epoch-0 coin of each sample, inverted
            in odd epochs, so every image is seen both ways in any two consecutive epochs.

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
        coin_epoch = 0 if alternate_flips else epoch
        mirrored = sample_uniform(seed, coin_epoch, FLIP_STREAM, indices) < 0.5
        if alternate_flips and epoch % 2 == 1:
            mirrored = ~mirrored
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    batch = torch.arange(B)[:, None, None]
    crops = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C): advanced dims first
    return crops.permute(0, 3, 1, 2).contiguous()


def random_erase(
    images: torch.Tensor, indices: torch.Tensor, seed: int, epoch: int, *, probability: float
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020), per sample: with `probability`, zero a random rectangle of
    2%..25% of the image with aspect ratio 0.3..3.3, as torchvision's RandomErasing does per image.

    Args:
        images: uint8 (B, C, S, S); erased pixels become 0 (the mean after normalisation is not 0,
            but zero-fill is what the reference training scripts do on uint8 input).
    """
    B, _, S, _ = images.shape
    u = [sample_uniform(seed, epoch, stream, indices) for stream in range(ERASE_STREAM, ERASE_STREAM + 5)]
    area = (0.02 + 0.23 * u[0]) * S * S
    log_ratio = math.log(0.3) + (math.log(3.3) - math.log(0.3)) * u[1]
    ratio = torch.exp(log_ratio)
    h = torch.sqrt(area * ratio).round().clamp(1, S).long()  # (B,)
    w = torch.sqrt(area / ratio).round().clamp(1, S).long()
    top = (u[2] * (S - h + 1)).long()
    left = (u[3] * (S - w + 1)).long()
    erase = u[4] < probability
    steps = torch.arange(S)
    rows = (steps >= top[:, None]) & (steps < (top + h)[:, None])  # (B, S)
    cols = (steps >= left[:, None]) & (steps < (left + w)[:, None])
    mask = rows[:, :, None] & cols[:, None, :] & erase[:, None, None]  # (B, S, S)
    return images.masked_fill(mask[:, None], 0)


def mix_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    rng: np.random.Generator,
    *,
    mixup_alpha: float,
    cutmix_alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) on a batch: half the batches each when
    both are on, each sample paired with the batch reversed (as timm's Mixup does).

    Args:
        images: uint8 (B, C, S, S); labels: int64 (B,).
        rng: seeded per batch, so a batch's mixing is fixed by (seed, epoch, step).

    Returns:
        images uint8 (B, C, S, S) and soft targets float32 (B, num_classes) that sum to 1.
    """
    targets = F.one_hot(labels, num_classes).float()
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = images.flip(0)
    if use_cutmix:
        S = images.shape[-1]
        side = round(S * math.sqrt(1.0 - lam))  # a box of area (1 - lam) S^2, clipped at the border
        cy, cx = (int(v) for v in rng.integers(0, S, size=2))
        y0, y1 = max(cy - side // 2, 0), min(cy + (side + 1) // 2, S)
        x0, x1 = max(cx - side // 2, 0), min(cx + (side + 1) // 2, S)
        images = images.clone()
        images[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (S * S)  # the share of pixels each label really has
    else:
        images = (images.float() * lam + partner.float() * (1.0 - lam)).round_().to(torch.uint8)
    return images, targets * lam + targets.flip(0) * (1.0 - lam)


AUTO_AUGMENT_GROUP = 8  # images that share one drawn operation (torchvision draws one per call)


def auto_augment(images: torch.Tensor, policy: str, seed: int) -> torch.Tensor:
    """TrivialAugment (Müller & Hutter 2021) or RandAugment (Cubuk et al. 2020), torchvision's v2
    implementations, applied to groups of AUTO_AUGMENT_GROUP images so that a batch sees many
    operations without a Python call per image.

    Args:
        images: uint8 (B, C, S, S).
        policy: "trivial" or "rand".
        seed: seeds torchvision's draws (restored afterwards), so the batch is reproducible.
    """
    from torchvision.transforms import v2

    transform = v2.TrivialAugmentWide() if policy == "trivial" else v2.RandAugment(num_ops=2, magnitude=9)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.cat([transform(group) for group in images.split(AUTO_AUGMENT_GROUP)])
