"""Named model presets: register, list, create. A duplicate name is an error."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

from foveal.errors import ConfigError, suggest
from foveal.models.classifier import AttentionClassifier
from foveal.models.cnn import ResNetClassifier
from foveal.models.config import AttentionConfig, CNNConfig, HybridConfig, ModelConfig, replace_config
from foveal.models.contract import FovealModel
from foveal.models.hybrid import HybridClassifier

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}


def register_model(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator: register a function returning the preset's ModelConfig under `name`."""

    def add(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _PRESETS:
            raise ValueError(f"model {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return add


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered presets matching a shell-style `pattern`, sorted."""
    return sorted(name for name in _PRESETS if fnmatch(name, pattern))


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of preset `name` with `overrides` (field names of its config) applied."""
    if name not in _PRESETS:
        raise ConfigError(
            f"unknown model {name!r}.{suggest(name, _PRESETS)} Available: {', '.join(list_models())}"
        )
    config = replace_config(_PRESETS[name](), name=name)
    return replace_config(config, **overrides) if overrides else config


def build_model(config: ModelConfig) -> FovealModel:
    """Instantiate the module a config describes (fresh, randomly initialised weights)."""
    if isinstance(config, AttentionConfig):
        return AttentionClassifier(config=config)
    if isinstance(config, CNNConfig):
        return ResNetClassifier(config=config)
    if isinstance(config, HybridConfig):
        return HybridClassifier(config=config)
    raise ConfigError(f"expected an AttentionConfig, CNNConfig or HybridConfig, got {type(config).__name__}")


def create_model(
    name: str, *, num_classes: int = 10, img_size: int | None = None, in_chans: int = 3, **overrides: Any
) -> FovealModel:
    """Create preset `name` for `num_classes` classes (random weights).

    Args:
        name: a name from `list_models()`, e.g. "cct-7-3x1".
        num_classes: size of the output layer.
        img_size: input side in pixels (default: the preset's).
        in_chans: input channels.
        **overrides: any other config field, e.g. `depth=4`; a misspelled one raises ConfigError.

    Returns:
        The model; `model.config` holds its full ModelConfig.
    """
    if img_size is not None:
        overrides["img_size"] = img_size
    return build_model(model_config(name, num_classes=num_classes, in_chans=in_chans, **overrides))
