"""Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers") for the hybrid and airbench models'
hidden matrices; every other parameter takes Nesterov SGD. One optimizer holds all of them, so that
one schedule, one checkpoint and one resume cover them.

Two kinds of matrix, two kinds of Muon step, each along the Nesterov momentum orthogonalised by a
Newton-Schulz iteration:
- the trunk's conv filters, as airbench's Muon run steps them: a batch norm follows each conv of the
  trunk's groups (models/layers/trunk.py), so the filters' scale is free; it is held fixed and the step is a
  rotation of lr-sized angle. torch.optim.Muon takes 2-D weights only; a conv's (C_out, C_in, k, k)
  filters are orthogonalised here as a (C_out, C_in k k) matrix.
- the attention blocks' weight matrices (q k v, the output projection, the MLP's two), when given a
  learning rate (--muon-matrix-lr): no norm follows them, so their scale is learnt; the step is
  torch.optim.Muon's (its "original" size, sqrt(max(1, rows / columns)), momentum 0.95) with a
  decoupled weight decay.
The head, the attention pooling's scorer, positional tables and the norms' parameters keep SGD: Muon
is for hidden layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from foveal.models.layers.encoder import EncoderBlock
from foveal.models.layers.trunk import ConvGroup

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic: fast at the cost of exactness
NEWTON_SCHULZ_STEPS = 5
MUON_MOMENTUM = 0.6  # airbench's Muon run, for the filters
MATRIX_MOMENTUM = 0.95  # torch.optim.Muon's default and Jordan's, for the attention matrices


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
    """Muon for the groups marked `orthogonal` (at a held norm when `held_norm`, else with decoupled
    weight decay), Nesterov SGD (L2 weight decay in the gradient, as torch.optim.SGD with dampening 0)
    for the others. Each group has its own lr, momentum and weight_decay; a schedule scales every
    group's lr alike."""

    def __init__(self, groups: list[dict], *, lr: float, momentum: float) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": 0.0}
        defaults |= {"orthogonal": False, "held_norm": True}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim.Optimizer's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, decay = group["momentum"], group["weight_decay"]
            orthogonal = group["orthogonal"]
            # Checkpoints from before the matrices' group have filter groups only: held_norm.
            held_norm = orthogonal and group.get("held_norm", True)
            for param in group["params"]:
                if param.grad is None:
                    continue
                if orthogonal and not held_norm:
                    param.mul_(1 - group["lr"] * decay)  # decoupled, as torch.optim.Muon's
                grad = param.grad.add(param, alpha=decay) if decay and not orthogonal else param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                update = grad.add(state["momentum_buffer"], alpha=momentum)  # Nesterov's look-ahead
                if held_norm:
                    # The norm after the conv makes the filters' scale free; holding it at sqrt(C_out)
                    # keeps the step's angle lr-sized all run long (airbench's Muon run).
                    param.mul_(math.sqrt(param.shape[0]) / param.norm().clamp_min(1e-12))
                    update = orthogonalised(update.flatten(1)).view_as(param)
                elif orthogonal:  # (rows, columns): torch.optim.Muon's "original" step size
                    update = orthogonalised(update) * math.sqrt(max(1.0, param.shape[0] / param.shape[1]))
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


def encoder_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weight matrices of the model's attention blocks: each block's q k v and output
    projections and its MLP's two layers (2-D, (out, in))."""
    return [
        layer.weight
        for block in model.modules()
        if isinstance(block, EncoderBlock)
        for layer in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2)
        if layer.weight.requires_grad
    ]


def muon_group(filters: Iterable[nn.Parameter], muon_lr: float) -> dict:
    """The param group of the trunk's filters, for MuonWithSGD."""
    return {
        "params": list(filters),
        "lr": muon_lr,
        "momentum": MUON_MOMENTUM,
        "weight_decay": 0.0,  # the norm is held fixed: decay would be undone each step
        "orthogonal": True,
        "held_norm": True,
    }


def matrix_group(matrices: Iterable[nn.Parameter], lr: float, weight_decay: float) -> dict:
    """The param group of the attention blocks' matrices, for MuonWithSGD: decoupled `weight_decay`
    (each step shrinks them by lr x weight_decay)."""
    return {
        "params": list(matrices),
        "lr": lr,
        "momentum": MATRIX_MOMENTUM,
        "weight_decay": weight_decay,
        "orthogonal": True,
        "held_norm": False,
    }
