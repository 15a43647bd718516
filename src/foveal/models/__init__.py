"""Models: configs, layers, the attention classifier, the hybrid (conv trunk + attention), the CNN
baselines and the preset registry."""

from foveal.models import presets as _presets  # noqa: F401  (registers the presets)
from foveal.models.config import (
    AttentionConfig,
    CNNConfig,
    HybridConfig,
    ModelConfig,
    config_from_dict,
    config_to_dict,
)
from foveal.models.layers.output import ModelOutput
from foveal.models.registry import build_model, create_model, list_models, model_config

__all__ = [
    "AttentionConfig",
    "CNNConfig",
    "HybridConfig",
    "ModelConfig",
    "ModelOutput",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "create_model",
    "list_models",
    "model_config",
]
