"""The convolutional baseline family: a ResNet (He et al. 2016) scaled for small images. Its config, its
module and its presets. (The airbench CNNs, built on the hybrid's trunk, are cnn_airbench.py.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from foveal.errors import ConfigError
from foveal.models.config import check_common
from foveal.models.contract import FovealModel
from foveal.models.layers.output import Features
from foveal.models.registry import register_family, register_model


@dataclass(frozen=True)
class CNNConfig:
    """A ResNet-style convolutional baseline, scaled for small images."""

    name: str = "custom-cnn"
    img_size: int = 32
    in_chans: int = 3
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)  # channels per stage; each stage after the first halves H, W
    blocks: tuple[int, ...] = (3, 3, 3)  # basic blocks per stage (3,3,3 = ResNet-20, He et al. 2016)
    stem_stride: int = 1  # 1 for 32-px images; 4 (stride-2 conv + max-pool) for ImageNet sizes
    drop_rate: float = 0.0  # dropout before the head
    family: str = "cnn"  # registry.py: the family a saved config is read back as

    def __post_init__(self) -> None:
        check_common(self)
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ConfigError(
                f"widths {self.widths} and blocks {self.blocks} must be non-empty and of equal length"
            )
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "blocks", tuple(self.blocks))


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


register_family("cnn", CNNConfig, ResNetClassifier)


# The CNN baseline: CIFAR ResNets (He et al. 2016), and ResNet-18 widths for bigger budgets.
@register_model("cnn-resnet8", "CIFAR ResNet-8 CNN baseline, fastest")
def cnn_resnet8() -> CNNConfig:
    return CNNConfig(widths=(32, 64, 128), blocks=(1, 1, 1))


@register_model("cnn-resnet20", "CIFAR ResNet-20 CNN baseline")
def cnn_resnet20() -> CNNConfig:
    return CNNConfig(widths=(16, 32, 64), blocks=(3, 3, 3))


@register_model("cnn-resnet18", "ResNet-18 CNN baseline, bigger budgets")
def cnn_resnet18() -> CNNConfig:
    return CNNConfig(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))
