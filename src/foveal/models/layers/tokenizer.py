"""Input layers: images (B, C, H, W) -> tokens (B, N, D) on an h x w grid."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class ConvTokenizer(nn.Module):
    """CCT's tokenizer: `num_layers` stages of conv, ReLU, 3x3/2 max-pool (Hassani et al. 2021), the
    inner ones `channels` wide, the last `embed_dim`; with batch norm after each conv when `norm="batch"`."""

    def __init__(
        self,
        *,
        in_chans: int,
        embed_dim: int,
        channels: int,
        num_layers: int,
        kernel_size: int,
        stride: int,
        norm: Literal["none", "batch"],
        whitened: bool,
    ) -> None:
        super().__init__()
        k, s = kernel_size, stride
        widths = [in_chans] + [channels] * (num_layers - 1) + [embed_dim]
        stages = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=False))
            if norm == "batch":
                stages.append(nn.BatchNorm2d(c_out))
            stages += [nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        self.stages = nn.Sequential(*stages)
        if whitened:  # set from the data by models/layers/whitening.py, then never trained
            self.stages[0].weight.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        features = self.stages(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        return features.flatten(2).transpose(1, 2), (h, w)  # (B, h*w, D)


class PatchTokenizer(nn.Module):
    """ViT's tokenizer: non-overlapping patch_size x patch_size patches, linearly projected."""

    def __init__(self, *, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        p = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=p, stride=p)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        features = self.proj(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        return features.flatten(2).transpose(1, 2), (h, w)
