"""The hybrid classifier: conv trunk -> tokens + positions -> attention blocks -> norm -> pooling -> head.

With depth=0 and pool="max" it is the airbench CNN, the baseline that asks whether the attention
blocks are worth their cost: the same trunk, its last feature map max-pooled.
"""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.config import HybridConfig
from foveal.models.contract import FovealModel
from foveal.models.layers.encoder import encoder_blocks, init_weights
from foveal.models.layers.output import Features
from foveal.models.layers.pooling import AttentionPool
from foveal.models.layers.position import position_embedding
from foveal.models.layers.trunk import ConvTrunk


class HybridClassifier(FovealModel):
    """Conv trunk (models/trunk.py), then `depth` pre-norm attention blocks on its (h, w) grid of tokens,
    keeping the model contract of models/contract.py."""

    def __init__(self, *, config: HybridConfig) -> None:
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.trunk = ConvTrunk(config=config)
        self.pos_embed = position_embedding(config.pos_embed, embed_dim=D, grid=config.grid_size)
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.blocks = encoder_blocks(config)
        # Attention blocks end in a residual sum, so they get a LayerNorm; a CNN's last layer is a BN.
        self.norm = nn.LayerNorm(D) if config.depth else nn.Identity()
        self.attention_pool = AttentionPool(embed_dim=D) if config.pool == "attention" else None
        self.head = nn.Linear(D, config.num_classes)
        self.apply(init_weights)  # the attention classifier's: truncated normal linears, He convs
        if config.trunk_init == "identity":
            self.trunk.identity_init()

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> the trunk's feature map (B, D, h, w) as tokens (B, h*w, D), row by
        row, after the attention blocks; with `need_weights` each block's probabilities (B, heads, N, N)."""
        features = self.trunk(images)  # (B, D, h, w)
        h, w = features.shape[-2:]
        tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, D)
        tokens = self.pos_drop(tokens + self.pos_embed((h, w)).to(tokens.dtype))
        attentions = []
        for block in self.blocks:
            tokens, probs = block(tokens, need_weights=need_weights)
            if probs is not None:
                attentions.append(probs)
        return Features(self.norm(tokens), (h, w), 0, attentions)

    def pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B, N, D) -> pooled (B, D), with per-token weights (B, N) for attention pooling only:
        a max or a mean weights no token."""
        if self.attention_pool is not None:
            return self.attention_pool(tokens)
        if self.config.pool == "max":
            return tokens.amax(dim=1), None
        return tokens.mean(dim=1), None

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled) * self.config.logit_scale
