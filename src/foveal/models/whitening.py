"""Whitening initialisation of the first convolution, from the training images.

The first layer's filters are set to the principal directions of the data's k x k patches, each
scaled by 1 / sqrt(its variance), in +/- pairs, and then frozen: the layer decorrelates the pixels
from step one instead of learning to, which is worth a large share of a short budget (the
"whitening" layer of Keller Jordan's airbench CIFAR-10 speed runs, after Coates & Ng 2011).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foveal.data.preprocess import Preprocessing

PATCH_SAMPLE_IMAGES = 5_000  # images the patch statistics are taken from (evenly spaced)
EPSILON = 5e-4  # added to each variance, so near-constant directions are not blown up


def whitening_weights(
    images: torch.Tensor, preprocessing: Preprocessing, out_channels: int, kernel: int
) -> torch.Tensor:
    """Filters float32 (2 * pairs, C, kernel, kernel) that whiten kernel x kernel patches, where
    pairs = min(out_channels // 2, C * kernel^2): each principal direction gives a +/- pair.

    Args:
        images: uint8 (N, C, S, S) training images.
    """
    step = max(1, images.shape[0] // PATCH_SAMPLE_IMAGES)
    sample = preprocessing.normalize(images[::step]).contiguous()  # (n, C, S, S)
    C = sample.shape[1]
    patches = F.unfold(sample, kernel).transpose(1, 2).reshape(-1, C * kernel * kernel)  # (n*L, C*k*k)
    patches = patches[:: max(1, patches.shape[0] // 200_000)].double()
    variances, directions = torch.linalg.eigh(torch.cov(patches.T))  # ascending variance
    pairs = min(out_channels // 2, C * kernel * kernel)
    top = directions[:, -pairs:].flip(1) / torch.sqrt(variances[-pairs:].flip(0) + EPSILON)  # (C*k*k, pairs)
    filters = torch.cat([top.T, -top.T]).float()  # (out_channels, C*k*k)
    return filters.reshape(2 * pairs, C, kernel, kernel)


def init_from_data(model: nn.Module, images: torch.Tensor, preprocessing: Preprocessing) -> None:
    """Initialise what `model`'s config sets from the training images: the whitened first conv of a
    `tokenizer_whitened` model. Other models are left as they are."""
    if getattr(getattr(model, "config", None), "tokenizer_whitened", False):
        whiten_first_conv(model, images, preprocessing)


def whiten_first_conv(model: nn.Module, images: torch.Tensor, preprocessing: Preprocessing) -> None:
    """Set the first Conv2d of `model` to whitening filters of `images` (it is frozen at build time).

    A conv with more channels than whitening filters (more than 2 * C * kernel^2) keeps its random
    He-initialised filters in the rest: fixed random features beside the whitened ones.
    """
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    weights = whitening_weights(images, preprocessing, conv.out_channels, conv.kernel_size[0])
    with torch.no_grad():
        conv.weight[: weights.shape[0]].copy_(weights.to(conv.weight.device))
