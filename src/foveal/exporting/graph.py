"""The computation an exported model holds: Foveal's logits over the test-time views, the pooled
features the open-set familiarity score reads (foveal/predictor/rejection.py), the attention-pooling weights
that let a deployed model draw its heatmap, and on request the attention-rollout map."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import nn

from foveal.data.preprocess import TestTimeViews
from foveal.errors import ConfigError, FovealError
from foveal.models.maps import available_methods, read_out, rollout
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import view_logits
from foveal.predictor.onnx_network import MAP_OUTPUTS

BASE_OUTPUTS = ("logits", "pooled", "pool_weights")  # every graph's first outputs (pool_weights: if it pools)
EXPORTABLE_MAPS = ("rollout",)  # extra map outputs; pool weights are always exported when the model has them


class ExportedModel(nn.Module):
    """What the ONNX graph computes: logits (B, K) over the test-time views, the pooled features
    (B, C), the pooling weights, and each extra map of `maps` (B, h*w), for the image's own view."""

    def __init__(self, model: nn.Module, views: TestTimeViews, maps: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.views = views
        self.maps = tuple(maps)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.forward_features(pixel_values, need_weights=bool(self.maps))
        pooled, weights = self.model.pool(features.tokens)  # weights (B, h*w) or None
        logits = view_logits(self.model, pixel_values, self.views, self.model.forward_head(pooled))
        outputs = (logits, pooled) if weights is None else (logits, pooled, weights)
        if "rollout" in self.maps:  # the default rollout: heads averaged, no link discarded
            relevance = rollout(features.attentions)
            outputs += (read_out(relevance, features.prefix_tokens, weights),)
        return outputs


def check_maps(classifier: Classifier, maps: Sequence[str]) -> None:
    """Raise ConfigError for a map of `maps` that cannot be exported or that the model cannot give."""
    for name in maps:
        if name not in EXPORTABLE_MAPS:
            raise ConfigError(
                f"--maps {name} cannot be exported; expected one of {', '.join(EXPORTABLE_MAPS)}."
            )
        if name not in available_methods(classifier.model):
            raise ConfigError(f"--maps {name} needs attention layers, and this model has none.")


def output_names(classifier: Classifier, maps: Sequence[str] = ()) -> list[str]:
    """The graph's outputs: "logits", "pooled", then "pool_weights" for models with attention
    pooling, then one per map of `maps` (MAP_OUTPUTS). Raises ConfigError for a map the model cannot
    give."""
    check_maps(classifier, maps)
    size = classifier.preprocessing.img_size
    probe = torch.zeros(1, 3, size, size, device=classifier.device)
    with torch.no_grad():
        outputs = ExportedModel(classifier.model, "none").eval()(probe)
    return list(BASE_OUTPUTS[: len(outputs)]) + [MAP_OUTPUTS[name] for name in maps]


def map_outputs(names: Sequence[str]) -> list[str]:
    """The extra map outputs (e.g. "rollout") among a graph's output `names`: those after the logits,
    the pooled features and the pooling weights."""
    return [name for name in names if name not in BASE_OUTPUTS]


def require(module: str) -> ModuleType:
    """Import an optional export dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FovealError(
            f"ONNX export needs {module}, which is not installed: pip install 'foveal[export]'."
        ) from None
