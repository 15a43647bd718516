"""The convolutional baseline: a ResNet (He et al. 2016) scaled for small images."""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.config import CNNConfig
from foveal.models.output import ModelOutput


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
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


class ResNetClassifier(nn.Module):
    """Stem, stages of basic blocks, global average pooling, linear head. Same contract as attention."""

    def __init__(self, config: CNNConfig) -> None:
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
            blocks = [BasicBlock(c_in, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.drop = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(c_in, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> feature map (B, C', h, w)."""
        return self.stages(self.stem(images))

    def pool(self, features: torch.Tensor) -> tuple[torch.Tensor, None]:
        return features.mean(dim=(2, 3)), None  # (B, C')

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(pooled))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.pool(self.forward_features(images))[0])

    def forward_explained(self, images: torch.Tensor) -> ModelOutput:
        """CNNs have no attention: logits only (use Grad-CAM style methods to explain them)."""
        features = self.forward_features(images)
        return ModelOutput(self.forward_head(self.pool(features)[0]), grid=tuple(features.shape[-2:]))
