"""The attention classifier: tokenizer -> positions -> encoder blocks -> norm -> pooling -> head."""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.config import AttentionConfig
from foveal.models.contract import FovealModel
from foveal.models.layers.encoder import encoder_blocks, init_weights
from foveal.models.layers.output import Features
from foveal.models.layers.pooling import AttentionPool
from foveal.models.layers.position import position_embedding
from foveal.models.layers.tokenizer import build_tokenizer


class AttentionClassifier(FovealModel):
    """A CCT-style classifier (Hassani et al. 2021), or a ViT with `tokenizer="patch", pool="cls"`,
    keeping the model contract of models/contract.py."""

    def __init__(self, *, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.tokenizer = build_tokenizer(config)
        self.pos_embed = position_embedding(config.pos_embed, embed_dim=D, grid=config.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if config.pool == "cls" else None
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.blocks = encoder_blocks(config)
        self.norm = nn.LayerNorm(D)
        self.attention_pool = AttentionPool(embed_dim=D) if config.pool == "attention" else None
        self.head = nn.Linear(D, config.num_classes)
        self.apply(init_weights)

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> normed tokens (B, N, D) on the token grid, and with `need_weights`
        each block's attention probabilities (B, heads, N, N)."""
        tokens, grid = self.tokenizer(images)  # (B, h*w, D)
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
        """Tokens (B, N, D) -> pooled (B, D) and per-token weights (B, N) (None with a class token)."""
        if self.attention_pool is None:
            return tokens[:, 0], None
        return self.attention_pool(tokens)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)
