"""Multi-head self-attention with a fused path for speed and an explicit path you can look into."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fused_backward_is_slow(x: torch.Tensor) -> bool:
    """True when training on a CPU: PyTorch's CPU flash-attention backward is far slower than the explicit
    product for the short sequences Foveal attends over (measured, torch 2.14.1, Intel Xeon with AMX,
    bf16, batch 256: 39 ms a step for 16 tokens of width 128, the whole hybrid model 1,466 images/s
    with it and 1,804 without). Inference keeps the fused kernel, whose forward is fast."""
    return x.device.type == "cpu" and torch.is_grad_enabled() and x.requires_grad


class Attention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017) over tokens (B, N, D).

    By default it runs `F.scaled_dot_product_attention` (flash / memory-efficient kernels where
    available). With `need_weights=True` it computes softmax(q k^T / sqrt(head_dim)) explicitly and
    also returns those probabilities (B, num_heads, N, N); both paths give the same output.
    """

    def __init__(
        self, *, embed_dim: int, num_heads: int, attn_drop_rate: float = 0.0, proj_drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_drop_rate = attn_drop_rate
        self.qkv = nn.Linear(embed_dim, embed_dim * 3, bias=False)  # CCT: no qkv bias
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def forward(
        self, x: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if need_weights or _fused_backward_is_slow(x):
            probs = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
            probs = probs.softmax(dim=-1)
            out = self.attn_drop(probs) @ v
            probs = probs if need_weights else None
        else:
            probs = None
            dropout = self.attn_drop_rate if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(B, N, D)  # heads back together
        return self.proj_drop(self.proj(out)), probs
