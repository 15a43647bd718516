"""Attention pooling: one softmax weight per token, then the weighted sum of the tokens."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """CCT's sequence pooling (Hassani et al. 2021): w = softmax(x W), pooled = w^T x.

    Returns the pooled vector (B, D) and the weights (B, N): the weights are what the classifier
    used from each token, so they are exposed rather than hidden.
    """

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(embed_dim, 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.score(tokens).squeeze(-1).softmax(dim=-1)  # (B, N)
        pooled = (weights.unsqueeze(1) @ tokens).squeeze(1)  # (B, 1, N) @ (B, N, D) -> (B, D)
        return pooled, weights
