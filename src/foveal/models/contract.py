"""The one interface every Foveal model family keeps, so that training, inference, explanation and
export never ask which family they hold.

    features = model.forward_features(images)        # Features: tokens (B, N, C) on a grid (h, w)
    pooled, weights = model.pool(features.tokens)     # (B, C), per-token weights (B, h*w) or None
    logits = model.forward_head(pooled)               # (B, num_classes)
    logits, pooled = model.forward_pooled(images)     # both, on the fast path (inference, open-set)
    out = model.forward_explained(images)             # ModelOutput: all of the above, attention too
"""

from __future__ import annotations

import torch
from torch import nn

from foveal.models.layers.output import Features, ModelOutput


class FovealModel(nn.Module):
    """Base class of every family; subclasses define `forward_features`, `pool` and `forward_head`."""

    config: object  # the family's frozen config dataclass (models/<family>.py), stored with the weights

    def forward_features(self, images: torch.Tensor, *, need_weights: bool = False) -> Features:
        """Images (B, C, H, W) -> Features; with `need_weights`, the attention probabilities too."""
        raise NotImplementedError

    def pool(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B, N, C) -> one vector per image (B, C) and each image token's weight (B, h*w)."""
        raise NotImplementedError

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (B, C) -> logits (B, num_classes)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, num_classes), on the fast (fused attention) path."""
        return self.forward_pooled(images)[0]

    def forward_pooled(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) -> logits (B, num_classes) and the pooled vectors (B, C) they came from."""
        pooled = self.pool(self.forward_features(images).tokens)[0]
        return self.forward_head(pooled), pooled

    def forward_explained(self, images: torch.Tensor) -> ModelOutput:
        """Like `forward`, through the explicit attention path, returning what the logits came from."""
        features = self.forward_features(images, need_weights=True)
        pooled, weights = self.pool(features.tokens)
        return ModelOutput(self.forward_head(pooled), features, weights)
