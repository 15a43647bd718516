"""The optimizer and its learning-rate schedule: linear warmup, then cosine (Loshchilov & Hutter 2017)
or linear decay, per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from foveal.config import OptimConfig
from foveal.errors import ConfigError
from foveal.training.layer_decay import scale_groups_by_layer
from foveal.training.muon import MuonWithSGD, batch_normed_filters, encoder_matrices, matrix_group, muon_group


@dataclass
class StepPlan:
    """How many optimizer steps the run takes, and how many of them warm up.

    Mutable on purpose: with a time budget the total is set once the step time has been measured
    (and refined after each epoch); the schedule reads it at every step.
    """

    total_steps: int
    warmup_steps: int


def lr_schedule(
    optimizer: torch.optim.Optimizer, plan: StepPlan, optim: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR scaling each group's lr, per step: linear warmup, then the configured decay.

    "cosine" ends at optim.min_lr_ratio; "linear" ends at zero, the shape that wins for a fixed
    budget in the fastest CIFAR-10 recipes (Jordan 2024).
    """

    def factor(step: int) -> float:
        if step < plan.warmup_steps:
            return (step + 1) / plan.warmup_steps
        span = max(1, plan.total_steps - plan.warmup_steps)
        progress = min(1.0, (step - plan.warmup_steps) / span)
        if optim.lr_decay == "linear":
            return 1.0 - progress
        low = optim.min_lr_ratio
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# When --weight-decay is not given (muon: its SGD part's; the filters' norm is held, training/muon.py).
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "adam": 0.0, "sgd": 5e-4, "muon": 5e-4}
SGD_MOMENTUM = 0.9


def build_optimizer(
    model: torch.nn.Module, optim: OptimConfig, layer_decay: float | None = None
) -> torch.optim.Optimizer:
    """The configured optimizer at optim.peak_lr, with no weight decay on biases, norms and positional
    tables (1-D or tiny params), except batch-norm biases under a bias_lr_scale other than 1.

    adamw decays decoupled from the gradient (Loshchilov & Hutter 2019); sgd (Nesterov) as L2 in the
    gradient, as the CNN recipes it comes from do; adam does not decay. muon is sgd with the trunk's
    batch-normed conv filters taken out and given to Muon at optim.muon_lr (training/muon.py), and with
    optim.muon_matrix_lr > 0 the attention blocks' matrices too, at that lr.

    With `layer_decay` (fine-tuning), each layer below the head learns at that times the lr of the one
    above (training/layer_decay.py).

    Batch-norm biases learn at bias_lr_scale x the lr (airbench's 64 for SGD: a BN shift is one number
    per channel and moves slowly at the rate the filters need); their L2 is divided by the same factor,
    so the decay step (lr x L2 x bias) is the filters' size.
    """
    weight_decay = DEFAULT_WEIGHT_DECAY[optim.optimizer] if optim.weight_decay is None else optim.weight_decay
    if optim.optimizer == "adam":
        weight_decay = 0.0
    bias_scale = optim.bias_lr_scale or 1.0
    norm_biases = {id(p) for p in _batch_norm_biases(model)} if bias_scale != 1.0 else set()
    filters = batch_normed_filters(model) if optim.optimizer == "muon" else []
    if optim.optimizer == "muon" and not filters:
        raise ConfigError(
            "--optimizer muon steps the batch-normed conv filters of the hybrid and airbench models' trunk, "
            "and this model has none; use sgd or adamw."
        )
    matrices = encoder_matrices(model) if filters and optim.muon_matrix_lr > 0 else []
    orthogonal = {id(p) for p in filters + matrices}
    decay, no_decay, scaled = [], [], []
    for param_name, param in model.named_parameters():
        if not param.requires_grad or id(param) in orthogonal:
            continue
        skip = param.ndim <= 1 or "pos_embed" in param_name or "cls_token" in param_name
        (scaled if id(param) in norm_biases else no_decay if skip else decay).append(param)
    lr = optim.peak_lr
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if scaled:
        groups.append({"params": scaled, "lr": lr * bias_scale, "weight_decay": weight_decay / bias_scale})
    if layer_decay is not None and layer_decay < 1.0:
        groups = scale_groups_by_layer(model, groups, lr, layer_decay)
    # On CUDA one fused kernel updates every tensor of a group, instead of a few launches per tensor.
    fused = {"fused": True} if all(p.is_cuda for group in groups for p in group["params"]) else {}
    if optim.optimizer == "muon":
        muon_groups = [muon_group(filters, optim.muon_lr)]
        if matrices:
            # Decoupled decay shrinking them by as much per step as the SGD part's L2 would (lr x decay;
            # 1e-4 at the recipe's, as torch.optim.Muon's defaults: lr 1e-3, decay 0.1).
            matrix_decay = weight_decay * lr / optim.muon_matrix_lr
            muon_groups.append(matrix_group(matrices, optim.muon_matrix_lr, matrix_decay))
        return MuonWithSGD([*muon_groups, *groups], lr=lr, momentum=SGD_MOMENTUM)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, **fused)
    if optim.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, **fused)
    return torch.optim.AdamW(groups, lr=lr, **fused)


def _batch_norm_biases(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The shift of every batch norm (B, C, H, W features) of `model`."""
    return [
        m.bias
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.bias is not None
    ]
