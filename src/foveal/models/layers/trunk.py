"""The hybrid family's convolutional trunk, after Keller Jordan's airbench CIFAR-10 speed runs (2024):
a frozen whitening stem, then conv groups with batch norm, the first `halvings` of them halving the grid.

    images (B, C, H, W) -> stem (B, 2 * pairs, H / s, W / s) -> groups -> (B, widths[-1], h, w)
"""

from __future__ import annotations

import torch
from torch import nn

BATCH_NORM_MOMENTUM = 0.4  # torch's convention; airbench's: running statistics keep up within a few epochs


class ScaleFreeBatchNorm(nn.BatchNorm2d):
    """Batch norm with its scale fixed at 1 and only its shift learned, as in airbench."""

    def __init__(self, *, num_features: int) -> None:
        super().__init__(num_features, momentum=BATCH_NORM_MOMENTUM)
        self.weight.requires_grad_(False)


class WhiteningStem(nn.Module):
    """A kernel_size x kernel_size conv of stride `stride` to `channels` maps, its filters set to whitening
    filters of the training images by models/layers/whitening.py and then frozen (with `whitened`); its
    bias learns.

    At stride 1 (images near 32 px) the 2x2 conv is padded on the right and bottom so the grid keeps its
    size; at stride s > 1 it reads non-overlapping s x s patches (a strided stem for large images).
    """

    def __init__(
        self, *, in_chans: int, channels: int, kernel_size: int, stride: int, whitened: bool
    ) -> None:
        super().__init__()
        k, s = kernel_size, stride
        # (left, right, top, bottom): keeps H x W at stride 1; above it, H / s is floored
        self.pad = nn.ZeroPad2d((0, k - 1, 0, k - 1)) if s == 1 else nn.Identity()
        self.conv = nn.Conv2d(in_chans, channels, k, stride=s, bias=True)
        self.act = nn.GELU()
        if whitened:
            self.conv.weight.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.pad(images)))  # (B, channels, H / s, W / s)


class ConvGroup(nn.Module):
    """conv3x3 -> 2x2 max-pool -> BN -> GELU -> conv3x3 -> BN -> GELU: airbench's group. The first conv
    runs before the pool, at the full resolution of its input; the output has half its height and width.
    With `halve=False` the pool is left out and the grid keeps its size (the same weights)."""

    def __init__(self, *, c_in: int, c_out: int, halve: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)  # the norm's shift is the bias
        self.pool = nn.MaxPool2d(2) if halve else nn.Identity()
        self.norm1 = ScaleFreeBatchNorm(num_features=c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = ScaleFreeBatchNorm(num_features=c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # (B, c_out, H/2, W/2), or H x W unhalved
        return self.act(self.norm2(self.conv2(x)))


class ConvTrunk(nn.Module):
    """The whitening stem, then one ConvGroup per entry of `widths`, the first `halvings` of them halving
    the grid: (B, C, H, W) -> (B, widths[-1], h, w) with h = H // (stem_stride * 2 ** halvings)
    (models/hybrid.py: hybrid_grid), w likewise."""

    def __init__(
        self,
        *,
        in_chans: int,
        stem_channels: int,
        stem_kernel: int,
        stem_stride: int,
        stem_whitened: bool,
        widths: tuple[int, ...],
        halvings: int,
    ) -> None:
        super().__init__()
        self.stem = WhiteningStem(
            in_chans=in_chans,
            channels=stem_channels,
            kernel_size=stem_kernel,
            stride=stem_stride,
            whitened=stem_whitened,
        )
        c_ins = (stem_channels,) + tuple(widths[:-1])
        self.groups = nn.Sequential(
            *(
                ConvGroup(c_in=c_in, c_out=c_out, halve=index < halvings)
                for index, (c_in, c_out) in enumerate(zip(c_ins, widths))
            )
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.groups(self.stem(images))

    def identity_init(self) -> None:
        """airbench's init of the groups' convs: PyTorch's default filters (about 0.4x He's scale, so a
        batch-normed filter's effective learning rate is higher), with the first c_in filters of each
        set to the identity (dirac), so that every group starts close to passing its input through.
        Measured in airbench's ablations: 94% in 18 epochs instead of 21."""
        for group in self.groups:
            for conv in (group.conv1, group.conv2):
                conv.reset_parameters()
                with torch.no_grad():
                    nn.init.dirac_(conv.weight[: conv.in_channels])  # (min(c_out, c_in), c_in, 3, 3)
