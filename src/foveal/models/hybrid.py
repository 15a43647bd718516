"""The hybrid family: conv trunk -> tokens + positions -> attention blocks -> norm -> pooling -> head.
Its config, its module and its presets.

With depth=0 and pool="max" it is the airbench CNN (cnn_airbench.py), the baseline that asks whether the
attention blocks are worth their cost: the same trunk, its last feature map max-pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from foveal.errors import ConfigError
from foveal.models.config import check_common
from foveal.models.layers.attention_stack import AttentionStack
from foveal.models.layers.encoder import init_weights
from foveal.models.layers.output import Features
from foveal.models.layers.trunk import ConvTrunk
from foveal.models.registry import register_family, register_model

STEM_REFERENCE_SIZE = 32  # px: the hybrid's stem brings every image to about this size (see HybridConfig)
STEM_MAX_WHITENING_PAIRS = 48  # +/- filter pairs at most: all of a 4x4 RGB patch's, the top 48 of larger


@dataclass(frozen=True)
class HybridConfig:
    """A convolutional trunk in the style of Keller Jordan's airbench (2024): a frozen whitening stem
    and conv groups with batch norm, then `depth` attention blocks on its h x w grid of tokens, then
    attention pooling and a linear head. With depth=0 and pool="max" it is the airbench CNN itself
    (cnn_airbench.py).

    The token grid, whatever the image size: the stem is a conv of stride `stem_stride`, the power of
    two nearest img_size / 32, so it brings any image to about 32 px (23 to 45); each conv group then
    halves the grid. Two groups give 8x8 tokens at 32 px and 7x7 at 224 px (stride 8); three (airbench)
    give 4x4 and 3x3. The attention cost is bounded at any image size.

    Photos need a finer grid than 3x3 for a map to point at an object: with `min_grid` > 0 (the budget
    ladder's presets), when the stem strides (images of about 48 px and more) the last conv group keeps
    its grid instead of halving it, and the stem's stride is lowered while the grid would still be under
    min_grid a side. With `stem_stride_rule` "nearest" (the ladder's presets since stop 40) the stride is
    the whole number nearest img_size / 32, so the trunk reads every photo at airbench's own 32 px and
    three groups give 8x8 tokens at 64, 96, 128, 160, 192, 224 and 256 px (7x7 to 8x8 between); the
    stem reads non-overlapping stride x stride patches. With "power-of-two" (models saved before) the
    stride is a power of two: 10x10 at 160, 12x12 at 96 and 192, 7x7 at 224. Measured against 3x3 on
    photos in docs/benchmarks.md (issue #33). Models saved without min_grid read it as 0 (airbench's
    halvings); without stem_stride_rule, "power-of-two".
    """

    name: str = "custom-hybrid"
    img_size: int = 32
    in_chans: int = 3
    num_classes: int = 10
    widths: tuple[int, ...] = (64, 128)  # channels per conv group, each halving the grid; last = embed_dim
    stem_whitened: bool = True  # stem conv set to whitening filters of the data, frozen (layers/whitening.py)
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
    min_grid: int = 0  # tokens a side the trunk keeps at least when its stem strides (0: halve every group)
    # "nearest": the stem's stride is the whole number nearest img_size / 32 (a photo read at 32 px);
    # "power-of-two": the power of two nearest it (models saved before stop 40)
    stem_stride_rule: Literal["power-of-two", "nearest"] = "power-of-two"
    family: str = "hybrid"  # registry.py: the family a saved config is read back as

    def __post_init__(self) -> None:
        check_common(self)
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
        if self.min_grid < 0:
            raise ConfigError(f"min_grid must be >= 0 tokens a side, got {self.min_grid}")
        if self.stem_stride_rule not in ("power-of-two", "nearest"):
            raise ConfigError(
                f"stem_stride_rule must be power-of-two or nearest, got {self.stem_stride_rule!r}"
            )
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
        """Stride of the stem conv, at least 1: the power of two nearest img_size / STEM_REFERENCE_SIZE, or
        with stem_stride_rule "nearest" the whole number nearest it; with `min_grid`, lowered (halved, or
        by one) while the trunk's grid (one halving fewer) would be under min_grid."""
        ratio = self.img_size / STEM_REFERENCE_SIZE
        nearest = self.stem_stride_rule == "nearest"
        stride = max(1, math.floor(ratio + 0.5)) if nearest else 2 ** max(0, round(math.log2(ratio)))
        if self.min_grid:
            last_kept = len(self.widths) - 1
            while stride > 1 and self.img_size // stride // 2**last_kept < self.min_grid:
                stride = stride - 1 if nearest else stride // 2
        return stride

    @property
    def halvings(self) -> int:
        """Conv groups that halve the grid: all of them, but the last when `min_grid` is set and the stem
        strides (a photo: the stem has already brought it to about 32 px)."""
        keeps_last = self.min_grid > 0 and self.stem_stride > 1
        return len(self.widths) - int(keeps_last)

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
        return self.stem_stride * 2**self.halvings

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) for an img_size x img_size input."""
        return hybrid_grid(self, self.img_size, self.img_size)


def hybrid_grid(config: HybridConfig, height: int, width: int) -> tuple[int, int]:
    """Token grid (h, w) the hybrid trunk makes from a height x width image: the stem keeps the size at
    stride 1 (padded) or divides it by its stride, and each halving group's 2x2 max-pool halves it
    (floored)."""
    return height // config.token_stride, width // config.token_stride


class HybridClassifier(AttentionStack):
    """Conv trunk (layers/trunk.py), then the attention stack (layers/attention_stack.py): `depth` pre-norm
    attention blocks on its (h, w) grid of tokens; keeps the model contract of models/contract.py."""

    def __init__(self, *, config: HybridConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = ConvTrunk(
            in_chans=config.in_chans,
            stem_channels=config.stem_channels,
            stem_kernel=config.stem_kernel,
            stem_stride=config.stem_stride,
            stem_whitened=config.stem_whitened,
            widths=config.widths,
            halvings=config.halvings,
        )
        # Attention blocks end in a residual sum, so they get a LayerNorm; a CNN's last layer is a BN.
        self.init_attention_stack(config, final_norm=config.depth > 0)
        self.apply(init_weights)  # the attention classifier's: truncated normal linears, He convs
        if config.trunk_init == "identity":
            self.trunk.identity_init()

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> the trunk's feature map (B, D, h, w) as tokens (B, h*w, D), row by
        row, after the attention blocks; with `need_weights` each block's probabilities (B, heads, N, N)."""
        features = self.trunk(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, D)
        return self.encode(tokens, (h, w), need_weights=need_weights)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled) * self.config.logit_scale


register_family("hybrid", HybridConfig, HybridClassifier)


# The hybrids: airbench's whitened conv trunk down to an 8x8 grid at 32 px (7x7 at 224 px),
# then attention blocks, attention pooling and a linear head. No dropout: they are built for short budgets.
# Sizes for 10 classes; at 224 px the stem reads 8x8 patches, so they grow only a little.
@register_model("hybrid-nano", "8x8 token grid (finer maps), smallest")
def hybrid_nano() -> HybridConfig:  # 0.11M parameters, 38 MFLOPs at 32 px (90 at 224 px)
    return HybridConfig(widths=(32, 64), depth=1, num_heads=2)


@register_model("hybrid-mini", "8x8 token grid (finer maps), cnn-airbench-half's cost")
def hybrid_mini() -> HybridConfig:  # 0.34M parameters, 74 MFLOPs at 32 px: cnn-airbench-half's cost
    return HybridConfig(widths=(32, 128), depth=1, num_heads=4)


@register_model("hybrid-small", "8x8 token grid (finer maps), 2 blocks")
def hybrid_small() -> HybridConfig:  # 0.55M parameters, 138 MFLOPs at 32 px (199 at 224 px)
    return HybridConfig(widths=(64, 128), depth=2, num_heads=2)


@register_model("hybrid-base", "8x8 token grid (finer maps), widest")
def hybrid_base() -> HybridConfig:  # 1.86M parameters, 333 MFLOPs at 32 px (349 at 224 px)
    return HybridConfig(widths=(64, 256), depth=2, num_heads=4)


# The budget ladder's models (training/recipe.py): an airbench CNN's whole trunk, down to a 4x4 grid at 32 px,
# then one attention block, attention pooling and a head. Measured on CIFAR-10 (docs/benchmarks.md, #12):
# level with the CNN of the same trunk at 3 minutes, where 8x8-grid hybrids of its cost were 4 points behind.
# On photos their trunk reads the image at 32 px and keeps PHOTO_MIN_GRID tokens a side or more (8x8 at 160
# and 224 px; see HybridConfig).
PHOTO_MIN_GRID = 7  # ResNet-50's Grad-CAM grid at 224 px; a 3x3 map cannot say which object was looked at
PHOTO_GRID = {"min_grid": PHOTO_MIN_GRID, "stem_stride_rule": "nearest"}
@register_model("hybrid-airbench-half", "attention on the half-width airbench trunk")
def hybrid_airbench_half() -> HybridConfig:  # cnn-airbench-half's trunk + 1 block: 0.63M, 85 MFLOPs at 32 px
    return HybridConfig(widths=(32, 128, 128), depth=1, num_heads=4, **PHOTO_GRID)


@register_model("hybrid-airbench", "attention on airbench94's trunk")
def hybrid_airbench() -> HybridConfig:  # cnn-airbench's trunk + 1 block: 2.50M, 310 MFLOPs at 32 px
    return HybridConfig(widths=(64, 256, 256), depth=1, num_heads=4, **PHOTO_GRID)
