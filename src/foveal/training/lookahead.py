"""Lookahead on a schedule (Zhang et al. 2019, in the form of hlb-cifar10 and airbench, Jordan 2024).

A slow copy of the weights (and the batch-norm statistics) trails the model: every EVERY steps it
moves toward the model by 1 - decay, and the model is set back to it. decay grows with the share of
the planned steps taken (BASE ** EVERY x share ** POWER), so early on the model runs free and near
the end it is held to a long average; after the last planned step the model becomes the slow copy.
Measured in airbench's ablations: 94% on CIFAR-10 in 12 epochs instead of 13.5, together with its
fast batch-norm statistics (models/layers/trunk.py).
"""

from __future__ import annotations

import torch
from torch import nn

EVERY = 5  # steps between synchronisations
BASE = 0.95  # decay per step at the end of the run
POWER = 3.0  # how late in the run the decay rises
START = 0.25  # share of the planned steps the model runs free before the slow copy is taken


class Lookahead:
    """The slow copy and its schedule; `step` is called after every optimizer step."""

    def __init__(self) -> None:
        self.slow: dict[str, torch.Tensor] | None = None  # floating-point entries of the state dict

    def step(self, model: nn.Module, global_step: int, total_steps: int) -> None:
        """After optimizer step number `global_step` (1-based) of `total_steps` planned."""
        if global_step >= total_steps:
            if self.slow is not None:
                self._sync(model, decay=1.0)  # the run ends on the slow weights
            return
        if global_step % EVERY or global_step < START * total_steps:
            return
        if self.slow is None:
            self.slow = {k: v.detach().clone() for k, v in _float_state(model).items()}
            return
        self._sync(model, decay=BASE**EVERY * (global_step / total_steps) ** POWER)

    def _sync(self, model: nn.Module, decay: float) -> None:
        assert self.slow is not None
        with torch.no_grad():
            for name, value in _float_state(model).items():
                slow = self.slow[name]
                slow.lerp_(value, 1.0 - decay)
                value.copy_(slow)

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """What a checkpoint keeps (tensors only: it loads with weights_only=True)."""
        return self.slow

    def load_state_dict(self, state: dict[str, torch.Tensor] | None, device: torch.device) -> None:
        self.slow = None if state is None else {k: v.to(device) for k, v in state.items()}


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point parameters and buffers (batch-norm counts are integers: left out)."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
