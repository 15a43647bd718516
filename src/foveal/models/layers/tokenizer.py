"""Input layers: images (B, C, H, W) -> tokens (B, N, D) on an h x w grid."""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.config import AttentionConfig


class ConvTokenizer(nn.Module):
    """CCT's tokenizer: `tokenizer_layers` stages of conv, ReLU, 3x3/2 max-pool (Hassani et al. 2021),
    with batch norm after each conv when `tokenizer_norm="batch"`."""

    def __init__(self, *, config: AttentionConfig) -> None:
        super().__init__()
        k, s = config.tokenizer_kernel, config.tokenizer_stride
        widths = [config.in_chans]
        widths += [config.tokenizer_channels] * (config.tokenizer_layers - 1) + [config.embed_dim]
        stages = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=False))
            if config.tokenizer_norm == "batch":
                stages.append(nn.BatchNorm2d(c_out))
            stages += [nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        self.stages = nn.Sequential(*stages)
        if config.tokenizer_whitened:  # set from the data by models/whitening.py, then never trained
            self.stages[0].weight.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        features = self.stages(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        return features.flatten(2).transpose(1, 2), (h, w)  # (B, h*w, D)


class PatchTokenizer(nn.Module):
    """ViT's tokenizer: non-overlapping patch_size x patch_size patches, linearly projected."""

    def __init__(self, *, config: AttentionConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, kernel_size=p, stride=p)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        features = self.proj(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        return features.flatten(2).transpose(1, 2), (h, w)


def build_tokenizer(config: AttentionConfig) -> nn.Module:
    return PatchTokenizer(config=config) if config.tokenizer == "patch" else ConvTokenizer(config=config)
