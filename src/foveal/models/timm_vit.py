"""The timm-vit family: timm's VisionTransformer (ViT, Dosovitskiy et al. 2021; DeiT, Touvron et al. 2021)
inside Foveal's model contract, so that public checkpoints (foveal/pretrained/) predict, explain and export
as Foveal's own models do. Its config, its module and its presets.

The timm module is held whole as `self.vit`: saved weights are "vit." + timm's own keys, so a public
state dict loads by adding one prefix. timm is an optional dependency, imported when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from foveal.errors import ConfigError
from foveal.models.config import check_common
from foveal.models.contract import FovealModel
from foveal.models.layers.encoder import init_weights
from foveal.models.layers.output import Features
from foveal.models.layers.pooling import AttentionPool
from foveal.models.registry import register_family, register_model

if TYPE_CHECKING:  # timm is optional: imported where a model is built
    from timm.models.vision_transformer import Block, VisionTransformer

NEEDS_TIMM = "a timm-vit model needs timm: pip install 'foveal[timm]'"


@dataclass(frozen=True)
class TimmViTConfig:
    """A timm VisionTransformer as a Foveal classifier: patch embedding, class (and register) tokens,
    pre-norm blocks, then the source's own pooling and head, or Foveal's attention pooling and a new head.

    Defaults are ViT-Ti/16 (DeiT-tiny's shape) at 224 px.
    """

    name: str = "custom-timm-vit"
    img_size: int = 224  # px per side; the position embedding is laid out for exactly this size
    in_chans: int = 3
    num_classes: int = 10
    architecture: str = "vit_tiny_patch16_224"  # timm's model name it came from, recorded
    patch_size: int = 16  # px per side of a patch: one token each
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3  # 64 channels a head, as every timm ViT/DeiT tiny, small and base
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    reg_tokens: int = 0  # register tokens after the class token (Darcet et al. 2024)
    no_embed_class: bool = False  # True: the position embedding covers the image tokens only (DeiT-III)
    global_pool: Literal["token", "avg"] = "token"  # the source's pooling: class token, or image-token mean
    fc_norm: bool | None = None  # timm's: the final norm after pooling; None: only for global_pool="avg"
    # "source": the source's pooling and its head (vit.head); "attention": Foveal's attention pooling
    # over the image tokens (models/layers/pooling.py) and a new linear head (`head`)
    pooling: Literal["source", "attention"] = "source"
    drop_path_rate: float = 0.1  # stochastic depth, linear from 0 to this over the blocks (DeiT's 0.1)
    family: str = "timm-vit"  # registry.py: the family a saved config is read back as

    def __post_init__(self) -> None:
        check_common(self)
        if self.pooling not in ("source", "attention"):
            raise ConfigError(f"pooling must be source or attention, got {self.pooling!r}")
        if self.global_pool not in ("token", "avg"):
            raise ConfigError(f"global_pool must be token or avg, got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ConfigError("global_pool='token' reads the class token; set class_token=True or use avg.")
        if self.depth < 1 or self.patch_size < 1 or self.reg_tokens < 0 or self.mlp_ratio <= 0:
            raise ConfigError(
                f"expected depth >= 1, patch_size >= 1, reg_tokens >= 0 and mlp_ratio > 0, got depth="
                f"{self.depth}, patch_size={self.patch_size}, reg_tokens={self.reg_tokens}, "
                f"mlp_ratio={self.mlp_ratio}"
            )
        if self.num_heads < 1 or self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}; "
                "choose a head count that divides the width."
            )
        if self.img_size % self.patch_size:
            nearest = self.img_size // self.patch_size * self.patch_size or self.patch_size
            raise ConfigError(
                f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}; "
                f"use an image size such as {nearest}."
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (h, w) for an img_size x img_size input."""
        side = self.img_size // self.patch_size
        return side, side

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the image's: the class token, then the register tokens."""
        return int(self.class_token) + self.reg_tokens


def vision_transformer(config: TimmViTConfig) -> VisionTransformer:
    """timm's VisionTransformer for `config` (its own head only with pooling="source").

    Raises:
        ConfigError: timm is not installed.
    """
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise ConfigError(NEEDS_TIMM) from None
    return VisionTransformer(
        img_size=config.img_size,
        patch_size=config.patch_size,
        in_chans=config.in_chans,
        num_classes=config.num_classes if config.pooling == "source" else 0,  # 0: no vit.head
        global_pool=config.global_pool,  # kept with pooling="attention": it places the final norm
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=config.qkv_bias,
        class_token=config.class_token,
        reg_tokens=config.reg_tokens,
        no_embed_class=config.no_embed_class,
        fc_norm=config.fc_norm,
        drop_path_rate=config.drop_path_rate,
    )


class TimmViTClassifier(FovealModel):
    """timm's VisionTransformer (`self.vit`) keeping the model contract of models/contract.py: tokens
    (B, prefix + h*w, D) after the final norm, the source's pooling and head or Foveal's attention
    pooling and `head`, and each block's attention probabilities on request."""

    def __init__(self, *, config: TimmViTConfig) -> None:
        super().__init__()
        self.config = config
        self.vit = vision_transformer(config)
        self.attention_pool: AttentionPool | None = None
        self.head: nn.Linear | None = None
        if config.pooling == "attention":
            self.attention_pool = AttentionPool(embed_dim=config.embed_dim)
            self.head = nn.Linear(config.embed_dim, config.num_classes)
            self.attention_pool.apply(init_weights)
            self.head.apply(init_weights)

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> tokens (B, prefix + h*w, D) after the final norm (the class token,
        the register tokens, then the image's row by row); with `need_weights` each block's attention
        probabilities (B, heads, N, N), computed explicitly and kept in the autograd graph."""
        vit = self.vit
        grid = (images.shape[-2] // self.config.patch_size, images.shape[-1] // self.config.patch_size)
        tokens = vit.patch_embed(images)  # (B, h*w, D)
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(tokens)))  # (B, prefix + h*w, D)
        attentions = []
        if need_weights:
            for block in vit.blocks:
                tokens, probs = explained_block(block, tokens)
                attentions.append(probs)
        else:
            tokens = vit.blocks(tokens)  # timm's own (fused) attention
        return Features(vit.norm(tokens), grid, vit.num_prefix_tokens, attentions)

    def pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B, N, D) -> pooled (B, D); with attention pooling also each image token's weight
        (B, h*w) (prefix tokens take no part), else None (the class token, or the image tokens' mean)."""
        if self.attention_pool is None:
            return self.vit.pool(tokens), None
        return self.attention_pool(tokens[:, self.vit.num_prefix_tokens :])

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled (B, D) -> logits (B, num_classes): the norm after pooling when the source has one,
        head dropout, then the source's head or the new one."""
        x = self.vit.head_drop(self.vit.fc_norm(pooled))
        return self.vit.head(x) if self.head is None else self.head(x)


def explained_block(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One timm pre-norm block on tokens (B, N, D), its attention computed explicitly from the block's
    own modules: the new tokens (B, N, D) and the probabilities (B, heads, N, N), in the graph."""
    attn = block.attn
    y = block.norm1(x)
    B, N, _ = y.shape
    qkv = attn.qkv(y).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, N, N)
    out = (attn.attn_drop(probs) @ v).transpose(1, 2).reshape(B, N, attn.attn_dim)  # heads together
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    x = x + block.drop_path1(block.ls1(out))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, probs


def config_from_vit(
    vit: nn.Module, *, name: str, architecture: str, pooling: Literal["source", "attention"] = "source"
) -> TimmViTConfig:
    """The TimmViTConfig that rebuilds timm model `vit` (its shape read from its attributes).

    Raises:
        ConfigError: `vit` is not a plain timm VisionTransformer that this family rebuilds (a distilled
            DeiT, attention-pool heads, a non-square input or patch, a headless model).
    """
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise ConfigError(NEEDS_TIMM) from None
    if type(vit) is not VisionTransformer:
        raise ConfigError(
            f"{architecture} is a timm {type(vit).__name__}; Foveal reads timm VisionTransformer "
            "checkpoints (ViT and DeiT, e.g. deit_tiny_patch16_224, vit_small_patch16_224)."
        )
    img, patch = tuple(vit.patch_embed.img_size), tuple(vit.patch_embed.patch_size)
    if img[0] != img[1] or patch[0] != patch[1] or vit.dynamic_img_size or vit.pool_include_prefix:
        raise ConfigError(
            f"{architecture} has a non-square input ({img}) or patch ({patch}), a dynamic image size or "
            "prefix tokens in its pooling; Foveal reads square, fixed-size ViT and DeiT checkpoints."
        )
    if vit.global_pool not in ("token", "avg") or vit.num_classes < 2:
        raise ConfigError(
            f"{architecture} pools with {vit.global_pool!r} into {vit.num_classes} classes; Foveal reads "
            "classifiers (2+ classes) pooling by class token (token) or mean (avg)."
        )
    block = vit.blocks[0]
    return TimmViTConfig(
        name=name,
        img_size=img[0],
        in_chans=vit.patch_embed.proj.in_channels,
        num_classes=vit.num_classes,
        architecture=architecture,
        patch_size=patch[0],
        embed_dim=vit.embed_dim,
        depth=len(vit.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / vit.embed_dim,
        qkv_bias=block.attn.qkv.bias is not None,
        class_token=vit.has_class_token,
        reg_tokens=vit.num_reg_tokens,
        no_embed_class=vit.no_embed_class,
        global_pool=vit.global_pool,
        fc_norm=not isinstance(vit.fc_norm, nn.Identity),
        pooling=pooling,
    )


register_family("timm-vit", TimmViTConfig, TimmViTClassifier)


# Random-weight timm ViTs of the public checkpoints' shapes (224 px, 16 px patches, 14x14 tokens). Their
# learned weights come from a public checkpoint instead: `foveal predict hf-hub:timm/NAME ...`.
@register_model("deit-tiny", "timm DeiT-tiny shape (ViT-Ti/16, 224 px), needs timm")
def deit_tiny() -> TimmViTConfig:
    return TimmViTConfig(architecture="deit_tiny_patch16_224", embed_dim=192, depth=12, num_heads=3)


@register_model("vit-small", "timm ViT-S/16 shape (DeiT-small's, 224 px), needs timm")
def vit_small() -> TimmViTConfig:
    return TimmViTConfig(architecture="vit_small_patch16_224", embed_dim=384, depth=12, num_heads=6)
