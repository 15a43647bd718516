"""Batched inference over decoded uint8 images, shared by evaluation, prediction and training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foveal.data.preprocess import Preprocessing


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    flip: bool = False,
) -> torch.Tensor:
    """Logits float32 (N, K) on the CPU for uint8 images (N, 3, S, S), in eval mode, batch by batch.

    Each image's logits depend only on that image (no batch statistics in eval mode), so results
    do not depend on batch size or composition. With `flip`, each image's logits are the mean of
    its own and its mirror image's (test-time flip averaging; twice the compute).
    """
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = preprocessing.normalize(images[start : start + batch_size].to(device, non_blocking=True))
        logits = model(batch).float()
        if flip:
            logits = (logits + model(batch.flip(3)).float()) / 2
        outputs.append(logits.cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy (no smoothing) of logits (N, K) against labels (N,)."""
    return float(F.cross_entropy(logits, labels))
