"""The one inference path: how every part of Foveal turns images into logits.

Prediction, evaluation, per-epoch validation, explanation labels, the report, `compare` and the
faithfulness curves all call these functions, so that a model answers the same everywhere. Beside
the logits, `predict_outputs` keeps each image's pooled features (its own view's), which the
open-set familiarity score reads (foveal/predictor/rejection.py).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def own_view(model: nn.Module, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits float32 (B, K) and pooled features float32 (B, C) of normalised images (B, C, H, W),
    without test-time views; pooled is None for a module that does not give them (`forward_pooled`
    is part of the model contract and of an exported ONNX model)."""
    forward_pooled = getattr(model, "forward_pooled", None)
    if forward_pooled is None:
        return model(normalized).float(), None
    logits, pooled = forward_pooled(normalized)
    return logits.float(), None if pooled is None else pooled.float()


def _shift_one_pixel(images: torch.Tensor, direction: int) -> torch.Tensor:
    """(B, C, H, W) moved one pixel along both axes (-1: up-left, 1: down-right), edges reflected."""
    _, _, H, W = images.shape
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
    start = 1 - direction  # 2 reads one pixel further on (content moves up-left), 0 one back
    return padded[:, :, start : start + H, start : start + W]


@dataclass(frozen=True)
class Outputs:
    """What the inference path gives for N images, on the CPU."""

    logits: torch.Tensor  # float32 (N, K), over the preprocessing's test-time views
    pooled: torch.Tensor | None  # float32 (N, C): each image's own view's pooled features, or None

    def __len__(self) -> int:
        return self.logits.shape[0]

    def rows(self) -> list[Outputs]:
        """One Outputs per image (logits (1, K)), for answers that go their separate ways (the server)."""
        pooled = [None] * len(self) if self.pooled is None else self.pooled.split(1)
        return [Outputs(logits, p) for logits, p in zip(self.logits.split(1), pooled)]

    @classmethod
    def cat(cls, parts: list[Outputs]) -> Outputs:
        if not parts:
            return cls(torch.empty(0, 0), None)
        pooled = [p.pooled for p in parts]
        return cls(
            torch.cat([p.logits for p in parts]),
            None if any(p is None for p in pooled) else torch.cat(pooled),
        )


@torch.inference_mode()
def predict_outputs(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> Outputs:
    """Logits (N, K) and pooled features (N, C) for uint8 images (N, 3, S, S), in eval mode, batch by
    batch.

    Each image's outputs depend only on that image (no batch statistics in eval mode), so results
    do not depend on batch size or composition. `preprocessing.test_time_views` decides the views.
    """
    model.eval()
    parts = []
    for start in range(0, images.shape[0], batch_size):
        batch = preprocessing.normalize(images[start : start + batch_size].to(device, non_blocking=True))
        logits, pooled = own_view(model, batch)
        logits = view_logits(model, batch, preprocessing.test_time_views, logits)
        parts.append(Outputs(logits.cpu(), None if pooled is None else pooled.cpu()))
    return Outputs.cat(parts)


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Logits float32 (N, K) on the CPU for uint8 images (N, 3, S, S): `predict_outputs`' logits."""
    return predict_outputs(model, images, preprocessing, device=device, batch_size=batch_size).logits


def mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy (no smoothing) of logits (N, K) against labels (N,)."""
    return float(F.cross_entropy(logits, labels))
