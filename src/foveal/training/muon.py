"""Muon for the conv trunk (Jordan et al. 2024, "Muon: an optimizer for hidden layers"), as airbench's
Muon run uses it: each batch-normed conv filter bank steps along its Nesterov momentum orthogonalised
by a Newton-Schulz iteration, at a fixed weight norm; every other parameter takes Nesterov SGD. One
optimizer holds both, so that one schedule, one checkpoint and one resume cover them.

Why these filters only: a batch norm follows each conv of the trunk's groups (models/trunk.py), so
the filters' scale is free and the step is a rotation of fixed size; the attention matrices, the
head and the norms' shifts have no such norm after them and keep SGD. torch.optim.Muon takes 2-D
weights only; a conv's (C_out, C_in, k, k) filters are orthogonalised here as a (C_out, C_in k k)
matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from foveal.models.trunk import ConvGroup

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic: fast at the cost of exactness
NEWTON_SCHULZ_STEPS = 5
MUON_MOMENTUM = 0.6  # airbench's Muon run


def orthogonalised(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """`matrix` (A, B) with its singular values moved to about 1 (0.5 to 1.5: the quintic trades
    exactness for speed), its singular vectors kept: the nearest semi-orthogonal matrix, roughly.
    In float32 whatever the training precision: the matrices are small (at most 256 x 2304 here)."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix.float()
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T  # iterate on the (short, long) orientation: x x^T is the small product
    x = x / (x.norm() + 1e-7)  # every singular value <= 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class MuonWithSGD(torch.optim.Optimizer):
    """Muon for the groups marked `orthogonal`, Nesterov SGD (L2 weight decay in the gradient, as
    torch.optim.SGD with dampening 0) for the others. Each group has its own lr, momentum and
    weight_decay; a schedule scales every group's lr alike."""

    def __init__(self, groups: list[dict], *, lr: float, momentum: float) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "orthogonal": False}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim.Optimizer's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, decay = group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.add(param, alpha=decay) if decay else param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                update = grad.add(state["momentum_buffer"], alpha=momentum)  # Nesterov's look-ahead
                if group["orthogonal"]:
                    # The norm after the conv makes the filters' scale free; holding it at sqrt(C_out)
                    # keeps the step's angle lr-sized all run long (airbench's Muon run).
                    param.mul_(math.sqrt(param.shape[0]) / param.norm().clamp_min(1e-12))
                    update = orthogonalised(update.flatten(1)).view_as(param)
                param.add_(update, alpha=-group["lr"])
        return loss


def batch_normed_filters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights of the trunk's convs, each of which a batch norm follows (the hybrid and
    airbench models' ConvGroups; the frozen whitening stem is not among them)."""
    return [
        conv.weight
        for group in model.modules()
        if isinstance(group, ConvGroup)
        for conv in (group.conv1, group.conv2)
        if conv.weight.requires_grad
    ]


def muon_group(filters: Iterable[nn.Parameter], muon_lr: float) -> dict:
    """The param group Muon updates, for MuonWithSGD."""
    return {
        "params": list(filters),
        "lr": muon_lr,
        "momentum": MUON_MOMENTUM,
        "weight_decay": 0.0,  # the norm is held fixed: decay would be undone each step
        "orthogonal": True,
    }
