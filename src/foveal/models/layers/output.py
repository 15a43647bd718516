"""What every Foveal model returns: its features on a token grid, and its output with the evidence."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Features:
    """The last layer's features of a batch, as tokens on the image's token grid.

    tokens: (B, N, C), N = prefix_tokens + h * w; a CNN's feature map (B, C, h, w) is laid out as
        its h * w positions, row by row.
    grid: (h, w) of the image tokens.
    prefix_tokens: tokens before the image tokens (1 for a ViT's class token, else 0).
    attentions: one (B, num_heads, N, N) probability tensor per attention block, when asked for
        with `need_weights=True` (rows sum to 1); empty for a model without attention.
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    prefix_tokens: int = 0
    attentions: list[torch.Tensor] = field(default_factory=list)

    @property
    def image_tokens(self) -> torch.Tensor:
        """(B, h * w, C): the tokens of the image grid, without any prefix token."""
        return self.tokens[:, self.prefix_tokens :]


@dataclass
class ModelOutput:
    """Logits plus everything a classifier used to reach them (`forward_explained`).

    logits: (B, num_classes).
    features: the `Features` the head read (their tokens stay in the autograd graph).
    pool_weights: (B, h * w) softmax weight of each image token in the pooled vector; None for
        class-token pooling and for average pooling (a CNN), where no token is weighted.
    """

    logits: torch.Tensor
    features: Features
    pool_weights: torch.Tensor | None = None

    @property
    def attentions(self) -> list[torch.Tensor]:
        return self.features.attentions

    @property
    def grid(self) -> tuple[int, int]:
        return self.features.grid
