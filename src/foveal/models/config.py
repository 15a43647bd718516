"""Typed architecture configs. One is stored in every saved model, so a model can be rebuilt exactly."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from foveal.errors import ConfigError, suggest

Family = Literal["attention", "cnn", "hybrid"]


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


STEM_REFERENCE_SIZE = 32  # px: the hybrid's stem brings every image to about this size (see HybridConfig)
STEM_MAX_WHITENING_PAIRS = 48  # +/- filter pairs at most: all of a 4x4 RGB patch's, the top 48 of larger


@dataclass(frozen=True)
class HybridConfig:
    """A convolutional trunk in the style of Keller Jordan's airbench (2024): a frozen whitening stem
    and conv groups with batch norm, then `depth` attention blocks on its h x w grid of tokens, then
    attention pooling and a linear head. With depth=0 and pool="max" it is the airbench CNN itself.

    The token grid, whatever the image size: the stem is a conv of stride `stem_stride`, the power of
    two nearest img_size / 32, so it brings any image to about 32 px (23 to 45); each conv group then
    halves the grid. Two groups give 8x8 tokens at 32 px and 7x7 at 224 px (stride 8); three (airbench)
    give 4x4 and 3x3. The attention cost is bounded at any image size.
    """

    name: str = "custom-hybrid"
    img_size: int = 32
    in_chans: int = 3
    num_classes: int = 10
    widths: tuple[int, ...] = (64, 128)  # channels per conv group, each halving the grid; last = embed_dim
    stem_whitened: bool = True  # stem conv set to whitening filters of the data, frozen (whitening.py)
    # "he": He-normal filters; "identity": PyTorch's default init with each conv's first c_in filters the
    # identity (airbench's dirac init). Measured level at 3 minutes (docs/benchmarks.md, #12 round 2)
    trunk_init: Literal["identity", "he"] = "he"
    pos_embed: Literal["learnable", "sincos", "none"] = "learnable"
    depth: int = 1  # attention blocks on the trunk's tokens; 0 makes a plain CNN
    num_heads: int = 2
    mlp_ratio: float = 2.0
    pool: Literal["attention", "max", "mean"] = "attention"  # max = airbench's global max pooling
    logit_scale: float = 1.0  # fixed multiplier on the logits; airbench's 1/9 tames max-pooled features
    drop_rate: float = 0.0  # dropout on tokens and in the MLP; none, as a short budget underfits
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth, linear from 0 to this value over the blocks
    family: Family = "hybrid"

    def __post_init__(self) -> None:
        _check_common(self)
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"widths must be one or more positive channel counts, got {self.widths}")
        if self.depth < 0:
            raise ConfigError(f"depth must be >= 0 attention blocks, got {self.depth}")
        if self.depth and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} (the last of widths) must be divisible by "
                f"num_heads={self.num_heads}; choose a head count that divides the width."
            )
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise ConfigError(f"sincos positions need embed_dim divisible by 4, got {self.embed_dim}")
        if self.logit_scale <= 0:
            raise ConfigError(f"logit_scale must be > 0, got {self.logit_scale}")
        if self.trunk_init not in ("identity", "he"):
            raise ConfigError(f"trunk_init must be identity or he, got {self.trunk_init!r}")
        if min(self.grid_size) < 1:
            raise ConfigError(
                f"img_size={self.img_size} is too small for {len(self.widths)} conv groups (token stride "
                f"{self.token_stride}); use --img-size {self.token_stride} or larger."
            )

    @property
    def embed_dim(self) -> int:
        """Width of the tokens: the last conv group's channels."""
        return self.widths[-1]

    @property
    def stem_stride(self) -> int:
        """Stride of the stem conv: the power of two nearest img_size / STEM_REFERENCE_SIZE, at least 1."""
        return 2 ** max(0, round(math.log2(self.img_size / STEM_REFERENCE_SIZE)))

    @property
    def stem_kernel(self) -> int:
        """2x2 patches as airbench at stride 1; non-overlapping stride x stride patches above it."""
        return max(2, self.stem_stride)

    @property
    def stem_channels(self) -> int:
        """Whitening filters of the stem: a +/- pair per principal direction of its patches, at most
        STEM_MAX_WHITENING_PAIRS pairs (24 filters for 2x2 RGB patches, 96 for 4x4 and larger)."""
        return 2 * min(self.in_chans * self.stem_kernel**2, STEM_MAX_WHITENING_PAIRS)

    @property
    def token_stride(self) -> int:
        """Pixels per token along each side: how a token-grid map is scaled back onto the image."""
        return self.stem_stride * 2 ** len(self.widths)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) for an img_size x img_size input."""
        return hybrid_grid(self, self.img_size, self.img_size)


ModelConfig = AttentionConfig | CNNConfig | HybridConfig


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


def hybrid_grid(config: HybridConfig, height: int, width: int) -> tuple[int, int]:
    """Token grid (h, w) the hybrid trunk makes from a height x width image: the stem keeps the size at
    stride 1 (padded) or divides it by its stride, and each group's 2x2 max-pool halves it (floored)."""
    return height // config.token_stride, width // config.token_stride


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
    cls = {"attention": AttentionConfig, "cnn": CNNConfig, "hybrid": HybridConfig}.get(family)
    if cls is None:
        raise ConfigError(f"unknown model family {family!r}; expected 'attention', 'cnn' or 'hybrid'")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown model config keys {unknown}; this model was saved by a newer Foveal?")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)
