"""Whitening initialisation of the first convolution, from the training images.

The first layer's filters are set to the principal directions of the data's k x k patches, each
scaled by 1 / sqrt(its variance), in +/- pairs, and then frozen: the layer decorrelates the pixels
from step one instead of learning to, which is worth a large share of a short budget (the
"whitening" layer of Keller Jordan's airbench CIFAR-10 speed runs, after Coates & Ng 2011).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Normalize = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, C, S, S) -> float (B, C, S, S), normalised

PATCH_SAMPLE_IMAGES = 5_000  # images the patch statistics are taken from (evenly spaced)
PATCH_SAMPLE = 200_000  # about this many of their patches (evenly spaced) give the covariance
NORMALIZE_CHUNK_PIXELS = 1_000_000  # pixels normalised at once, over a chunk of images (12 MB of float32 RGB)
EPSILON = 5e-4  # added to each variance, so near-constant directions are not blown up


def whitening_weights(
    images: torch.Tensor, normalize: Normalize, out_channels: int, kernel: int
) -> torch.Tensor:
    """Filters float32 (2 * pairs, C, kernel, kernel) that whiten kernel x kernel patches, where
    pairs = min(out_channels // 2, C * kernel^2): each principal direction gives a +/- pair.

    Args:
        images: uint8 (N, C, S, S) training images.
        normalize: the model's input normalisation (`Preprocessing.normalize`).
    """
    step = max(1, images.shape[0] // PATCH_SAMPLE_IMAGES)
    sample = images[::step]  # a view: (n, C, S, S) uint8
    n, C, H, W = sample.shape
    rows_out, cols_out = H - kernel + 1, W - kernel + 1
    per_image = rows_out * cols_out  # patches of one image
    stride = max(1, n * per_image // PATCH_SAMPLE)  # every stride-th patch of all n * L, in order
    # Only the sampled patches are gathered (from a strided view of each chunk of images), never all
    # n * L of them: unfolding 5,000 images of 96 px at once would take 4.8 GB.
    per_chunk = max(1, NORMALIZE_CHUNK_PIXELS // (H * W))
    rows = []
    for start in range(0, n, per_chunk):
        chunk = normalize(sample[start : start + per_chunk])  # (b, C, H, W)
        windows = chunk.unfold(2, kernel, 1).unfold(3, kernel, 1)  # view: (b, C, H', W', k, k)
        first = -start * per_image % stride  # the first patch here whose global index is a multiple of stride
        index = torch.arange(first, chunk.shape[0] * per_image, stride)
        image, position = index // per_image, index % per_image
        patches = windows[image, :, position // cols_out, position % cols_out]  # (m, C, k, k)
        rows.append(patches.reshape(-1, C * kernel * kernel).double())
    patches = torch.cat(rows)  # (about PATCH_SAMPLE, C*k*k), in F.unfold's (C, k, k) order
    variances, directions = torch.linalg.eigh(torch.cov(patches.T))  # ascending variance
    pairs = min(out_channels // 2, C * kernel * kernel)
    top = directions[:, -pairs:].flip(1) / torch.sqrt(variances[-pairs:].flip(0) + EPSILON)  # (C*k*k, pairs)
    filters = torch.cat([top.T, -top.T]).float()  # (out_channels, C*k*k)
    return filters.reshape(2 * pairs, C, kernel, kernel)


def init_from_data(model: nn.Module, images: torch.Tensor, normalize: Normalize) -> None:
    """Initialise what `model`'s config sets from the training images: the whitened first conv of a
    `tokenizer_whitened` attention model or a `stem_whitened` hybrid. Other models are left as they are."""
    config = getattr(model, "config", None)
    if getattr(config, "tokenizer_whitened", False) or getattr(config, "stem_whitened", False):
        whiten_first_conv(model, images, normalize)


def whiten_first_conv(model: nn.Module, images: torch.Tensor, normalize: Normalize) -> None:
    """Set the first Conv2d of `model` to whitening filters of `images` (it is frozen at build time).

    A conv with more channels than whitening filters (more than 2 * C * kernel^2) keeps its random
    He-initialised filters in the rest: fixed random features beside the whitened ones.
    """
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    weights = whitening_weights(images, normalize, conv.out_channels, conv.kernel_size[0])
    with torch.no_grad():
        conv.weight[: weights.shape[0]].copy_(weights.to(conv.weight.device))
