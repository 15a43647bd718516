"""What a model returns when asked to show its work."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """Logits plus the attention a classifier used to reach them.

    logits: (B, num_classes).
    pool_weights: (B, N) softmax weight of each token in the pooled vector (None for CLS pooling
        and for CNNs).
    attentions: one (B, num_heads, N, N) probability tensor per encoder block (rows sum to 1).
    grid: the token grid (h, w); N == h * w (plus one with a class token).
    """

    logits: torch.Tensor
    pool_weights: torch.Tensor | None = None
    attentions: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] = (0, 0)
