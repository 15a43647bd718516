"""The one inference path: how every part of Foveal turns images into logits.

Prediction, evaluation, per-epoch validation, explanation labels, the report, `compare` and the
faithfulness curves all call these two functions, so that a model answers the same everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foveal.data.preprocess import Preprocessing, TestTimeViews


def view_logits(
    model: nn.Module, normalized: torch.Tensor, views: TestTimeViews, logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits float32 (B, K) of normalised images (B, C, H, W) over the preprocessing's test-time
    views: the image alone ("none"); the mean of the image's and its mirror image's ("flip"); or
    ("flip-shift", airbench's six views, Jordan 2024) half that mean and half the mean of the four
    views shifted one pixel up-left and down-right, each with its mirror.

    `logits`: the image's own logits when the caller already has them (the ONNX graph, which takes
    the pooling weights from the same pass)."""
    logits = model(normalized).float() if logits is None else logits
    if views == "none":
        return logits
    logits = (logits + model(normalized.flip(3)).float()) / 2
    if views == "flip-shift":
        shifted = [_shift_one_pixel(normalized, direction) for direction in (-1, 1)]
        around = sum((model(x).float() + model(x.flip(3)).float()) / 2 for x in shifted) / 2
        logits = (logits + around) / 2
    return logits


def _shift_one_pixel(images: torch.Tensor, direction: int) -> torch.Tensor:
    """(B, C, H, W) moved one pixel along both axes (-1: up-left, 1: down-right), edges reflected."""
    _, _, H, W = images.shape
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
    start = 1 - direction  # 2 reads one pixel further on (content moves up-left), 0 one back
    return padded[:, :, start : start + H, start : start + W]


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits float32 (N, K) on the CPU for uint8 images (N, 3, S, S), in eval mode, batch by batch.

    Each image's logits depend only on that image (no batch statistics in eval mode), so results
    do not depend on batch size or composition. `preprocessing.test_time_views` decides the views.
    """
    model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = preprocessing.normalize(images[start : start + batch_size].to(device, non_blocking=True))
        outputs.append(view_logits(model, batch, preprocessing.test_time_views).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy (no smoothing) of logits (N, K) against labels (N,)."""
    return float(F.cross_entropy(logits, labels))
