"""The attention family: a CCT-style classifier (Hassani et al. 2021, "Escaping the Big Data Paradigm with
Compact Transformers") or a ViT: tokenizer -> positions -> encoder blocks -> norm -> pooling -> head.
Its config, its module and its presets. CCT-L/KxM = L encoder blocks, a KxK conv tokenizer of M stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from foveal.errors import ConfigError
from foveal.models.config import check_common
from foveal.models.layers.attention_stack import AttentionStack
from foveal.models.layers.encoder import init_weights
from foveal.models.layers.output import Features
from foveal.models.layers.tokenizer import ConvTokenizer, PatchTokenizer
from foveal.models.registry import register_family, register_model


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
    tokenizer_whitened: bool = False  # first conv: the data's whitening filters, frozen (layers/whitening.py)
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
    family: str = "attention"  # registry.py: the family a saved config is read back as

    def __post_init__(self) -> None:
        check_common(self)
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


class AttentionClassifier(AttentionStack):
    """A CCT-style classifier (Hassani et al. 2021), or a ViT with `tokenizer="patch", pool="cls"`,
    keeping the model contract of models/contract.py. After the tokenizer: layers/attention_stack.py."""

    def __init__(self, *, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = build_tokenizer(config)
        self.init_attention_stack(config, final_norm=True)
        self.apply(init_weights)

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> normed tokens (B, N, D) on the token grid, and with `need_weights`
        each block's attention probabilities (B, heads, N, N)."""
        tokens, grid = self.tokenizer(images)  # (B, h*w, D)
        return self.encode(tokens, grid, need_weights=need_weights)


def build_tokenizer(config: AttentionConfig) -> nn.Module:
    """The tokenizer `config.tokenizer` names: images (B, C, H, W) -> tokens (B, h*w, D) and (h, w)."""
    if config.tokenizer == "patch":
        return PatchTokenizer(
            in_chans=config.in_chans, embed_dim=config.embed_dim, patch_size=config.patch_size
        )
    return ConvTokenizer(
        in_chans=config.in_chans,
        embed_dim=config.embed_dim,
        channels=config.tokenizer_channels,
        num_layers=config.tokenizer_layers,
        kernel_size=config.tokenizer_kernel,
        stride=config.tokenizer_stride,
        norm=config.tokenizer_norm,
        whitened=config.tokenizer_whitened,
    )


register_family("attention", AttentionConfig, AttentionClassifier)


# Foveal's own CCT-style sizes, from seconds on a laptop CPU to a GPU-sized base.
@register_model("foveal-tiny", "smoke tests: trains in seconds")
def foveal_tiny() -> AttentionConfig:
    return AttentionConfig(embed_dim=64, depth=1, num_heads=2, mlp_ratio=2.0, tokenizer_layers=1)


@register_model("foveal-small", "general use on a CPU, with --epochs")
def foveal_small() -> AttentionConfig:
    return AttentionConfig(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("foveal-medium", "more capacity for long --epochs runs")
def foveal_medium() -> AttentionConfig:
    return AttentionConfig(embed_dim=192, depth=4, num_heads=3, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("foveal-base", "largest foveal-*, sized for a GPU")
def foveal_base() -> AttentionConfig:  # GPU-sized: 8 blocks of width 384 on an 8x8 grid at 32 px
    return AttentionConfig(embed_dim=384, depth=8, num_heads=6, mlp_ratio=2.0, tokenizer_layers=2)


# Attention-only models for short budgets (the `--time` ladder until issue #12, now the hybrid-airbench
# presets below): whitened, batch-normed tokenizers and no dropout, because a budget of a few passes
# over the data underfits long before it overfits. Smallest to largest.
def _budget_model(embed_dim: int, depth: int, tokenizer_channels: int) -> AttentionConfig:
    return AttentionConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
        mlp_ratio=2.0,
        tokenizer_layers=2,
        tokenizer_channels=tokenizer_channels,
        tokenizer_norm="batch",
        tokenizer_whitened=True,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
    )


@register_model("foveal-nano", "whitened tokenizer, short budgets: smallest")
def foveal_nano() -> AttentionConfig:  # 0.19M parameters, 35 MFLOPs at 32 px
    return _budget_model(embed_dim=96, depth=2, tokenizer_channels=32)


@register_model("foveal-micro", "whitened tokenizer, short budgets: 1 block")
def foveal_micro() -> AttentionConfig:  # 0.22M parameters, 58 MFLOPs at 32 px
    return _budget_model(embed_dim=128, depth=1, tokenizer_channels=64)


@register_model("foveal-mini", "whitened tokenizer, short budgets: 2 blocks")
def foveal_mini() -> AttentionConfig:  # 0.35M parameters, 75 MFLOPs at 32 px
    return _budget_model(embed_dim=128, depth=2, tokenizer_channels=64)


# Published CCT shapes, so results can be set beside the paper's.
@register_model("cct-2-3x2", "CCT paper's smallest CIFAR shape")
def cct_2_3x2() -> AttentionConfig:  # 0.28M params on CIFAR-10
    return AttentionConfig(embed_dim=128, depth=2, num_heads=2, mlp_ratio=1.0, tokenizer_layers=2)


@register_model("cct-4-3x2", "CCT paper's CIFAR shape, 4 blocks")
def cct_4_3x2() -> AttentionConfig:
    return AttentionConfig(embed_dim=128, depth=4, num_heads=2, mlp_ratio=1.0, tokenizer_layers=2)


@register_model("cct-7-3x1", "CCT paper's CIFAR-10 model")
def cct_7_3x1() -> AttentionConfig:  # 3.76M params on CIFAR-10
    return AttentionConfig(embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, tokenizer_layers=1)


@register_model("cct-7-3x2", "CCT paper's CIFAR shape, 2-stage tokenizer")
def cct_7_3x2() -> AttentionConfig:
    return AttentionConfig(embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0, tokenizer_layers=2)


@register_model("cct-14-7x2", "CCT paper's ImageNet shape (224 px)")
def cct_14_7x2() -> AttentionConfig:  # ImageNet shape: 224 px, 7x7/2 convs, 14x14 tokens
    return AttentionConfig(
        img_size=224,
        embed_dim=384,
        depth=14,
        num_heads=6,
        mlp_ratio=3.0,
        tokenizer_layers=2,
        tokenizer_kernel=7,
        tokenizer_stride=2,
    )


# Plain ViTs: patch embedding and a class token, for attention-vs-attention comparisons.
@register_model("vit-lite-7-4", "plain ViT (ViT-Lite-7/4 of the CCT paper)")
def vit_lite_7_4() -> AttentionConfig:  # ViT-Lite-7/4 of the CCT paper
    return AttentionConfig(
        tokenizer="patch", patch_size=4, pool="cls", embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0
    )


@register_model("vit-tiny-4", "small plain ViT, for attention-vs-attention")
def vit_tiny_4() -> AttentionConfig:
    return AttentionConfig(
        tokenizer="patch", patch_size=4, pool="cls", embed_dim=128, depth=4, num_heads=2, mlp_ratio=2.0
    )
