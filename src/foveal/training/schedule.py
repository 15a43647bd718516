"""Learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter 2017), per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class StepPlan:
    """How many optimizer steps the run takes, and how many of them warm up.

    Mutable on purpose: with a time budget the total is set once the step time has been measured
    (and refined after each epoch); the schedule reads it at every step.
    """

    total_steps: int
    warmup_steps: int


def warmup_cosine(
    optimizer: torch.optim.Optimizer, plan: StepPlan, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR scaling each group's lr by the warmup-cosine factor of the step count."""

    def factor(step: int) -> float:
        if step < plan.warmup_steps:
            return (step + 1) / plan.warmup_steps
        span = max(1, plan.total_steps - plan.warmup_steps)
        progress = min(1.0, (step - plan.warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(
    model: torch.nn.Module, name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW (or Adam) with no weight decay on biases, norms and positional tables (1-D or tiny params)."""
    decay, no_decay = [], []
    for param_name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or "pos_embed" in param_name or "cls_token" in param_name
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay if name == "adamw" else 0.0},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)
