"""Exponential moving average of the weights (Polyak & Juditsky 1992; as timm's ModelEmaV3).

The average, not the raw model, is what gets validated, saved and shipped when EMA is on: late in
a short run it sits nearer the bottom of the loss valley than the last noisy step.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An EMA copy of `model` (parameters and buffers, e.g. BatchNorm statistics), or None if decay is 0."""
    if decay <= 0:
        return None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
