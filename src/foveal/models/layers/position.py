"""Positional embeddings that adapt when the token grid changes size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LearnablePositionEmbedding(nn.Module):
    """A learned (D, h, w) table, bicubically resized when the input's grid differs (as in DeiT/timm)."""

    def __init__(self, *, embed_dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, embed_dim, *grid))
        nn.init.trunc_normal_(self.weight, std=0.2)  # CCT's init for its learned positions

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        table = self.weight  # (1, D, h0, w0)
        if tuple(table.shape[-2:]) != tuple(grid):
            table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return table.flatten(2).transpose(1, 2)  # (1, h*w, D)


class SinCosPositionEmbedding(nn.Module):
    """Fixed 2-D sine-cosine embedding (MAE, He et al. 2022), computed for any grid."""

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        if embed_dim % 4:
            raise ValueError(f"sincos positions need embed_dim divisible by 4, got {embed_dim}")
        self.embed_dim = embed_dim

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        quarter = self.embed_dim // 4
        omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # (D/4,)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        y = ys.reshape(-1, 1) * omega  # (h*w, D/4)
        x = xs.reshape(-1, 1) * omega
        table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)  # (h*w, D)
        return table.unsqueeze(0)  # (1, h*w, D)


class NoPositionEmbedding(nn.Module):
    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        return torch.zeros(1, 1, 1)


def position_embedding(kind: str, *, embed_dim: int, grid: tuple[int, int]) -> nn.Module:
    """The position embedding a config's `pos_embed` names ("learnable", "sincos" or "none");
    a module mapping a token grid (h, w) to embeddings (1, h*w, embed_dim)."""
    if kind == "learnable":
        return LearnablePositionEmbedding(embed_dim=embed_dim, grid=grid)
    if kind == "sincos":
        return SinCosPositionEmbedding(embed_dim=embed_dim)
    return NoPositionEmbedding()
