"""FLOPs of a forward pass, counted by PyTorch: for planning budgets and reporting utilisation."""

from __future__ import annotations

import torch
from torch import nn


def forward_flops(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """FLOPs of one image's forward pass (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:  # (no_grad trips the counter's module tracker in torch 2.14)
        model(torch.zeros(1, in_chans, img_size, img_size, device=next(model.parameters()).device))
    model.train(was_training)
    return int(counter.get_total_flops())
