"""Typed architecture configs. One is stored in every saved model, so a model can be rebuilt exactly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from foveal.errors import ConfigError, suggest

Family = Literal["attention", "cnn"]


@dataclass(frozen=True)
class AttentionConfig:
    """A CCT-style (or ViT-style) attention classifier: tokenizer, encoder, pooling, head."""

    name: str = "custom"
    img_size: int = 32  # pixels per side the positional embedding is laid out for; others interpolate
    in_chans: int = 3
    num_classes: int = 10
    tokenizer: Literal["conv", "patch"] = "conv"  # conv = CCT's conv+ReLU+max-pool stages; patch = ViT
    tokenizer_layers: int = 2  # conv stages; each max-pool halves the token grid
    tokenizer_kernel: int = 3  # conv kernel; CCT names this the "3" in CCT-7/3x1
    tokenizer_stride: int = 1  # conv stride; 2 for ImageNet-size inputs (CCT-14/7x2)
    tokenizer_channels: int = 64  # width of the inner conv stages (CCT uses 64)
    tokenizer_norm: Literal["none", "batch"] = "none"  # CCT: none; batch norm after each conv trains faster
    tokenizer_whitened: bool = False  # first conv set to whitening filters of the data, frozen (whitening.py)
    patch_size: int = 4  # only for tokenizer="patch"
    pos_embed: Literal["learnable", "sincos", "none"] = "learnable"
    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 2
    mlp_ratio: float = 2.0
    pool: Literal["attention", "cls"] = "attention"  # attention = CCT's softmax sequence pooling
    drop_rate: float = 0.0  # dropout on tokens and in the MLP
    attn_drop_rate: float = 0.1  # dropout on attention probabilities (CCT default)
    drop_path_rate: float = 0.1  # stochastic depth, linear from 0 to this value over the blocks
    family: Family = "attention"

    def __post_init__(self) -> None:
        _check_common(self)
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}; "
                "choose a head count that divides the width."
            )
        if self.tokenizer == "patch" and self.img_size % self.patch_size:
            nearest = self.img_size // self.patch_size * self.patch_size or self.patch_size
            raise ConfigError(
                f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}; "
                f"use an image size such as {nearest}."
            )
        if self.tokenizer_whitened and (
            self.tokenizer != "conv" or self.tokenizer_channels % 2 or self.tokenizer_layers < 2
        ):
            raise ConfigError(
                "tokenizer_whitened needs the conv tokenizer with 2+ stages and an even tokenizer_channels."
            )
        if min(self.grid_size) < 1:
            raise ConfigError(
                f"img_size={self.img_size} is too small for this tokenizer (token stride "
                f"{self.token_stride}); use --img-size {self.token_stride} or larger."
            )

    @property
    def token_stride(self) -> int:
        """Pixels per token along each side: how a token-grid map is scaled back onto the image."""
        if self.tokenizer == "patch":
            return self.patch_size
        return (self.tokenizer_stride * 2) ** self.tokenizer_layers

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) for an img_size x img_size input."""
        return token_grid(self, self.img_size, self.img_size)


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
    family: Family = "cnn"

    def __post_init__(self) -> None:
        _check_common(self)
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ConfigError(
                f"widths {self.widths} and blocks {self.blocks} must be non-empty and of equal length"
            )
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "blocks", tuple(self.blocks))


ModelConfig = AttentionConfig | CNNConfig


def _check_common(config: ModelConfig) -> None:
    if config.img_size < 1 or config.img_size > 4096:
        raise ConfigError(f"img_size must be between 1 and 4096 pixels, got {config.img_size}")
    if config.num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got num_classes={config.num_classes}")
    if config.in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {config.in_chans}")


def token_grid(config: AttentionConfig, height: int, width: int) -> tuple[int, int]:
    """Token grid (h, w) the tokenizer makes from a height x width image."""
    if config.tokenizer == "patch":
        return height // config.patch_size, width // config.patch_size
    pad = config.tokenizer_kernel // 2
    for _ in range(config.tokenizer_layers):
        height = (height + 2 * pad - config.tokenizer_kernel) // config.tokenizer_stride + 1
        width = (width + 2 * pad - config.tokenizer_kernel) // config.tokenizer_stride + 1
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1  # max-pool k3 s2 p1
    return height, width


def replace_config(config: ModelConfig, **changes: Any) -> ModelConfig:
    """Return `config` with `changes` applied; an unknown field raises ConfigError naming close matches."""
    known = {f.name for f in dataclasses.fields(config)}
    for key in changes:
        if key not in known:
            raise ConfigError(
                f"unknown model option {key!r} for a {config.family} model.{suggest(key, known)}"
            )
    return dataclasses.replace(config, **changes)


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """A JSON-ready dict of `config`, with its family, for saving beside the weights."""
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config saved by `config_to_dict`; unknown keys raise ConfigError."""
    family = data.get("family", "attention")
    cls = {"attention": AttentionConfig, "cnn": CNNConfig}.get(family)
    if cls is None:
        raise ConfigError(f"unknown model family {family!r}; expected 'attention' or 'cnn'")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown model config keys {unknown}; this model was saved by a newer Foveal?")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)
