"""The convolutional baseline: a ResNet (He et al. 2016) scaled for small images."""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.config import CNNConfig
from foveal.models.contract import FovealModel
from foveal.models.layers.output import Features


class BasicBlock(nn.Module):
    def __init__(self, *, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetClassifier(FovealModel):
    """Stem, stages of basic blocks, global average pooling, linear head (models/contract.py)."""

    def __init__(self, *, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        c0 = config.widths[0]
        if config.stem_stride == 1:
            stem = [nn.Conv2d(config.in_chans, c0, 3, padding=1, bias=False)]
        else:  # ImageNet-size inputs: 7x7/2 conv then 3x3/2 max-pool
            stem = [nn.Conv2d(config.in_chans, c0, 7, stride=2, padding=3, bias=False)]
        stem += [nn.BatchNorm2d(c0), nn.ReLU(inplace=True)]
        if config.stem_stride != 1:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], c0
        for i, (width, count) in enumerate(zip(config.widths, config.blocks)):
            blocks = [BasicBlock(c_in=c_in, c_out=width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(c_in=width, c_out=width, stride=1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.drop = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(c_in, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> the last feature map (B, C', h, w) as tokens (B, h*w, C'), row by row.
        A CNN has no attention, so `need_weights` adds nothing."""
        features = self.stages(self.stem(images))  # (B, C', h, w)
        h, w = features.shape[-2:]
        return Features(features.flatten(2).transpose(1, 2), (h, w))

    def pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Global average pooling: every position counts the same, so there are no weights to show."""
        return tokens.mean(dim=1), None  # (B, C')

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(pooled))
