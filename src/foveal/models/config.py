"""What every family's config shares. Each family's own frozen dataclass lives in its file (attention.py,
hybrid.py, cnn.py, cnn_airbench.py); one is stored in every saved model, so a model can be rebuilt exactly."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from foveal.errors import ConfigError, suggest


class FamilyConfig(Protocol):
    """The fields every family's config has (a frozen dataclass)."""

    name: str  # the preset it came from, or "custom..."
    img_size: int  # px per side
    in_chans: int
    num_classes: int
    family: str  # the name its family is registered under (registry.py), saved with the config


ConfigT = TypeVar("ConfigT", bound=FamilyConfig)


def check_common(config: FamilyConfig) -> None:
    """Raise ConfigError when a field every family shares is out of range."""
    if config.img_size < 1 or config.img_size > 4096:
        raise ConfigError(f"img_size must be between 1 and 4096 pixels, got {config.img_size}")
    if config.num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got num_classes={config.num_classes}")
    if config.in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {config.in_chans}")


def replace_config(config: ConfigT, **changes: Any) -> ConfigT:
    """Return `config` with `changes` applied; an unknown field raises ConfigError naming close matches."""
    known = {f.name for f in dataclasses.fields(config)}
    for key in changes:
        if key not in known:
            raise ConfigError(
                f"unknown model option {key!r} for a {config.family} model.{suggest(key, known)}"
            )
    return dataclasses.replace(config, **changes)


def config_to_dict(config: FamilyConfig) -> dict[str, Any]:
    """A JSON-ready dict of `config`, with its family, for saving beside the weights."""
    return dataclasses.asdict(config)
