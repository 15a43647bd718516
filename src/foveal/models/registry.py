"""The registry: model families (config class -> module class) and named presets (name -> config).

A family file registers itself once, and each preset with a decorator carrying its one-line description:

    register_family("hybrid", HybridConfig, HybridClassifier)

    @register_model("hybrid-nano", "8x8 token grid (finer maps), smallest")
    def hybrid_nano() -> HybridConfig:
        return HybridConfig(widths=(32, 64), depth=1, num_heads=2)

A duplicate family or preset name is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

from foveal.errors import ConfigError, suggest
from foveal.models.config import FamilyConfig, replace_config
from foveal.models.contract import FovealModel


@dataclass(frozen=True)
class Family:
    """A registered family: its config dataclass and the module built from it."""

    name: str  # what its configs' `family` field says, and saved models' config.json
    config_class: type
    module_class: Callable[..., FovealModel]  # called as module_class(config=config)
    formerly: tuple[str, ...] = ()  # family names its presets were saved under before (see config_from_dict)


@dataclass(frozen=True)
class Preset:
    """A registered preset: the function returning its config, and what `foveal models` says it is for."""

    make_config: Callable[[], Any]
    description: str


_FAMILIES: dict[str, Family] = {}  # by family name
_BY_CONFIG: dict[type, Family] = {}  # by config class
_PRESETS: dict[str, Preset] = {}


def register_family(
    name: str, config_class: type, module_class: Callable[..., FovealModel], *, formerly: tuple[str, ...] = ()
) -> None:
    """Register family `name`: `build_model` makes a `module_class` from a `config_class`, and
    `config_from_dict` reads a saved config whose family is `name` as a `config_class`."""
    if name in _FAMILIES or config_class in _BY_CONFIG:
        raise ValueError(f"model family {name!r} ({config_class.__name__}) is already registered")
    family = Family(name, config_class, module_class, formerly)
    _FAMILIES[name] = family
    _BY_CONFIG[config_class] = family


def register_model(name: str, description: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorator: register a function returning the preset's config under `name`, with the
    `description` `foveal models` lists (what it is for, in 60 characters at most)."""

    def add(fn: Callable[[], Any]) -> Callable[[], Any]:
        if name in _PRESETS:
            raise ValueError(f"model {name!r} is already registered")
        _PRESETS[name] = Preset(fn, description)
        return fn

    return add


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered presets matching a shell-style `pattern`, sorted."""
    return sorted(name for name in _PRESETS if fnmatch(name, pattern))


def model_description(name: str) -> str:
    """What preset `name` is for, as its registration says (what `foveal models` lists)."""
    return _preset(name).description


def model_config(name: str, **overrides: Any) -> FamilyConfig:
    """The config of preset `name` with `overrides` (field names of its config) applied."""
    config = replace_config(_preset(name).make_config(), name=name)
    return replace_config(config, **overrides) if overrides else config


def _preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise ConfigError(
            f"unknown model {name!r}.{suggest(name, _PRESETS)} Available: {', '.join(list_models())}"
        )
    return _PRESETS[name]


def build_model(config: FamilyConfig) -> FovealModel:
    """Instantiate the module a config describes (fresh, randomly initialised weights)."""
    family = _BY_CONFIG.get(type(config))
    if family is None:
        expected = ", ".join(cls.__name__ for cls in _BY_CONFIG)
        raise ConfigError(f"expected a model config ({expected}), got {type(config).__name__}")
    return family.module_class(config=config)


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
        The model; `model.config` holds its full config.
    """
    if img_size is not None:
        overrides["img_size"] = img_size
    return build_model(model_config(name, num_classes=num_classes, in_chans=in_chans, **overrides))


def config_from_dict(data: dict[str, Any]) -> FamilyConfig:
    """Rebuild a config saved by `config_to_dict`; an unknown family or key raises ConfigError."""
    family = _FAMILIES.get(_saved_family(data))
    if family is None:
        raise ConfigError(
            f"unknown model family {data.get('family')!r}; expected one of {', '.join(sorted(_FAMILIES))}"
        )
    known = {f.name for f in dataclasses.fields(family.config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown model config keys {unknown}; this model was saved by a newer Foveal?")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    values["family"] = family.name
    return family.config_class(**values)


def _saved_family(data: dict[str, Any]) -> str:
    """The family a saved config is read as: its own, unless it was saved from a preset whose family has
    since been renamed (the airbench CNNs were "hybrid" models before #31; their modules are the same)."""
    saved = data.get("family", "attention")  # configs saved before families had names were attention
    preset = _PRESETS.get(data.get("name", ""))
    if preset is not None:
        family = _BY_CONFIG.get(type(preset.make_config()))
        if family is not None and saved in family.formerly:
            return family.name
    return saved
