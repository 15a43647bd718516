"""The attention stack the attention classifier and the hybrid share: image tokens (B, h*w, D) on a grid
-> + positions -> (class token) -> encoder blocks -> norm -> pooling (B, D) -> linear head (B, classes).

A base class, not a submodule: its parts are attributes of the model itself (pos_embed, cls_token,
pos_drop, blocks, norm, attention_pool, head), so saved weights keep their names ("blocks.0.attn...").
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from foveal.models.contract import FovealModel
from foveal.models.layers.encoder import encoder_blocks
from foveal.models.layers.output import Features
from foveal.models.layers.pooling import AttentionPool
from foveal.models.layers.position import position_embedding


class AttentionStackConfig(Protocol):
    """The config fields the stack reads (AttentionConfig and HybridConfig have them)."""

    num_classes: int
    pos_embed: str  # "learnable", "sincos" or "none"
    depth: int
    num_heads: int
    mlp_ratio: float
    pool: str  # "attention", "cls" (a class token), "max" or "mean"
    drop_rate: float
    attn_drop_rate: float
    drop_path_rate: float

    @property
    def embed_dim(self) -> int: ...

    @property
    def grid_size(self) -> tuple[int, int]: ...


class AttentionStack(FovealModel):
    """A model ending in the attention stack: a subclass makes its tokens, then calls `encode`; `pool` and
    `forward_head` are the stack's."""

    config: AttentionStackConfig

    def init_attention_stack(self, config: AttentionStackConfig, *, final_norm: bool) -> None:
        """Build the stack's parts on `self`, in this order (the order parameters are drawn at a seed).

        Args:
            config: the model's config.
            final_norm: a LayerNorm after the blocks (else an identity: a CNN's last layer is a BN).
        """
        D = config.embed_dim
        self.pos_embed = position_embedding(config.pos_embed, embed_dim=D, grid=config.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if config.pool == "cls" else None
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.blocks = encoder_blocks(
            depth=config.depth,
            embed_dim=D,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            drop_rate=config.drop_rate,
            attn_drop_rate=config.attn_drop_rate,
            drop_path_rate=config.drop_path_rate,
        )
        self.norm = nn.LayerNorm(D) if final_norm else nn.Identity()
        self.attention_pool = AttentionPool(embed_dim=D) if config.pool == "attention" else None
        self.head = nn.Linear(D, config.num_classes)

    def encode(self, tokens: torch.Tensor, grid: tuple[int, int], *, need_weights: bool) -> Features:
        """Image tokens (B, h*w, D) -> normed tokens (B, prefix + h*w, D) after the blocks, and with
        `need_weights` each block's attention probabilities (B, heads, N, N)."""
        tokens = tokens + self.pos_embed(grid).to(tokens.dtype)
        prefix = 0
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            prefix = 1
        tokens = self.pos_drop(tokens)
        attentions = []
        for block in self.blocks:
            tokens, probs = block(tokens, need_weights=need_weights)
            if probs is not None:
                attentions.append(probs)
        return Features(self.norm(tokens), grid, prefix, attentions)

    def pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B, N, D) -> pooled (B, D), with per-token weights (B, N) for attention pooling only:
        a class token, a max or a mean weights no token."""
        if self.attention_pool is not None:
            return self.attention_pool(tokens)
        if self.config.pool == "cls":
            return tokens[:, 0], None
        if self.config.pool == "max":
            return tokens.amax(dim=1), None
        return tokens.mean(dim=1), None

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)
