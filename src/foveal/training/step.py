"""One training step, written once: the loop, the benchmarks and the tests all call it."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    correct: int  # top-1 hits in the batch
    applied: bool  # False when a non-finite loss or gradient made the step be skipped


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    *,
    grad_clip: float = 0.0,
    autocast: AbstractContextManager | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> StepResult:
    """Forward, loss, backward, clip, optimizer step, on one batch.

    Args:
        images: float (B, C, H, W), normalised, on the model's device.
        targets: int64 labels (B,), or float32 label mixtures (B, classes) from MixUp / CutMix.
        grad_clip: max global gradient norm (0: no clipping; the norm is still measured).
        autocast: a reduced-precision context (CUDA), or None for full precision.
        scaler: a GradScaler for fp16, or None.

    Returns:
        The loss, gradient norm and hits; with a non-finite loss or gradient the update is skipped
        (weights unchanged) and `applied` is False.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast or nullcontext():
        logits = model(images)
        loss = criterion(logits, targets)
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(optimizer)
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    loss_value = float(loss.detach())
    applied = math.isfinite(loss_value) and math.isfinite(grad_norm)
    if scaler:
        scaler.step(optimizer)  # the scaler skips non-finite steps itself and lowers its scale
        scaler.update()
    elif applied:
        optimizer.step()
    labels = targets if targets.ndim == 1 else targets.argmax(dim=1)  # a mixture's larger share
    correct = int((logits.detach().argmax(dim=1) == labels).sum())
    return StepResult(loss_value, grad_norm, correct, applied)
