"""Models, laid out as timm's: reusable building blocks in layers/, one file per family holding its config,
its module and its registered presets (attention.py, hybrid.py, cnn.py, cnn_airbench.py, timm_vit.py), and the
registry that maps family names and config classes to modules and preset names to configs."""

from foveal.models.attention import AttentionClassifier, AttentionConfig
from foveal.models.cnn import CNNConfig, ResNetClassifier
from foveal.models.cnn_airbench import AirbenchCNNConfig
from foveal.models.config import config_to_dict
from foveal.models.hybrid import HybridClassifier, HybridConfig
from foveal.models.layers.output import ModelOutput
from foveal.models.registry import (
    build_model,
    config_from_dict,
    create_model,
    list_models,
    model_config,
    model_description,
)
from foveal.models.timm_vit import TimmViTClassifier, TimmViTConfig

# Every family's config (AirbenchCNNConfig is a HybridConfig).
ModelConfig = AttentionConfig | CNNConfig | HybridConfig | TimmViTConfig

__all__ = [
    "AirbenchCNNConfig",
    "AttentionClassifier",
    "AttentionConfig",
    "CNNConfig",
    "HybridClassifier",
    "HybridConfig",
    "ModelConfig",
    "ModelOutput",
    "ResNetClassifier",
    "TimmViTClassifier",
    "TimmViTConfig",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "create_model",
    "list_models",
    "model_config",
    "model_description",
]
