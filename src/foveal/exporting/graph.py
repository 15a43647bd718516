"""The computation an exported model holds: Foveal's logits over the test-time views, and the
attention-pooling weights that let a deployed model draw its heatmap."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import nn

from foveal.classifier import Classifier
from foveal.data.preprocess import TestTimeViews
from foveal.errors import FovealError
from foveal.inference import view_logits

INPUT = "pixel_values"


class ExportedModel(nn.Module):
    """What the ONNX graph computes: logits over the test-time views, and the pooling weights."""

    def __init__(self, model: nn.Module, views: TestTimeViews) -> None:
        super().__init__()
        self.model = model
        self.views = views

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.forward_features(pixel_values)
        pooled, weights = self.model.pool(features.tokens)  # weights (B, h*w) or None
        logits = view_logits(self.model, pixel_values, self.views, self.model.forward_head(pooled))
        return (logits,) if weights is None else (logits, weights)


def output_names(classifier: Classifier) -> list[str]:
    """["logits", "pool_weights"] for models with attention pooling, else ["logits"]."""
    size = classifier.preprocessing.img_size
    probe = torch.zeros(1, 3, size, size, device=classifier.device)
    with torch.no_grad():
        outputs = ExportedModel(classifier.model, "none").eval()(probe)
    return ["logits", "pool_weights"][: len(outputs)]


def require(module: str) -> ModuleType:
    """Import an optional export dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FovealError(
            f"ONNX export needs {module}, which is not installed: pip install 'foveal[export]'."
        ) from None
