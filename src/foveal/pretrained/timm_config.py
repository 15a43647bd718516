"""What timm's config.json says about a checkpoint (the `save_for_hf` layout, as on the hub): the
architecture, rebuilt through timm and read back as a TimmViTConfig; the class names; the preprocessing.

    {"architecture": "deit_tiny_patch16_224", "num_classes": 1000, "label_names": [...],
     "model_args": {...}, "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic",
                                             "crop_pct": 0.9, "mean": [...], "std": [...], ...}}
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import torch

from foveal.data.preprocess import INTERPOLATIONS, Preprocessing
from foveal.errors import ConfigError
from foveal.models.timm_vit import NEEDS_TIMM, TimmViTConfig, config_from_vit, vision_transformer

# timm's defaults where a pretrained_cfg is silent (timm/data/constants.py, resolve_data_config)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"


def config_from_timm_json(data: dict[str, Any], *, name: str, where: str) -> TimmViTConfig:
    """The TimmViTConfig of config.json `data`: timm builds its architecture (with its model_args and
    num_classes, on the meta device: no weights made) and the built model's shape is read back.

    Raises:
        ConfigError: timm is missing, does not know the architecture, or it is not a ViT/DeiT classifier
            this family rebuilds exactly.
    """
    try:
        import timm
    except ImportError:
        raise ConfigError(NEEDS_TIMM) from None
    architecture = data["architecture"]
    args = dict(data.get("model_args") or {})
    args["num_classes"] = data.get("num_classes", args.get("num_classes", 0))
    try:
        with torch.device("meta"):
            vit = timm.create_model(architecture, pretrained=False, **args)
    except (RuntimeError, TypeError, ValueError, AssertionError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"{where}: timm {timm.__version__} cannot build {architecture!r} ({first}); Foveal reads timm "
            "ViT and DeiT checkpoints (e.g. deit_tiny_patch16_224, vit_small_patch16_224)."
        ) from None
    try:
        config = config_from_vit(vit, name=name, architecture=architecture)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    check_rebuilds(vit, config, where)
    return config


def check_rebuilds(vit: torch.nn.Module, config: TimmViTConfig, where: str) -> None:
    """Raise ConfigError when the timm-vit model of `config` is not built of the same modules as `vit`
    (layer scale, q/k norms, a pre-norm, another activation or norm epsilon: parts no config field says)."""
    with torch.device("meta"):
        rebuilt = vision_transformer(dataclasses.replace(config, drop_path_rate=0.0))
    if repr(rebuilt) == repr(vit):
        return
    theirs, ours = repr(vit).splitlines(), repr(rebuilt).splitlines()
    added = [line for line in difflib.unified_diff(ours, theirs, lineterm="", n=0) if line[:1] == "+"]
    differing = next((line[1:].strip() for line in added if not line.startswith("+++")), "")
    raise ConfigError(
        f"{where}: {config.architecture} has parts a timm-vit model does not rebuild ({differing}); Foveal "
        "reads plain ViT and DeiT checkpoints (e.g. deit_tiny_patch16_224, vit_small_patch16_224)."
    )


def class_names(data: dict[str, Any], num_classes: int) -> list[str]:
    """The checkpoint's class names: config.json's label_names (a list, or a dict by index); else, for
    an ImageNet head timm recognises by its size, each class's first WordNet lemma ("tench"); else
    "class_0" ... Names that repeat get their index appended, so that every name is one class."""
    names = data.get("label_names") or (data.get("pretrained_cfg") or {}).get("label_names")
    if isinstance(names, dict):
        names = [names.get(str(i), names.get(i)) for i in range(num_classes)]
    if not (isinstance(names, list) and len(names) == num_classes and all(isinstance(n, str) for n in names)):
        names = imagenet_names(num_classes) or [f"class_{i}" for i in range(num_classes)]
    return _unique(names)


def imagenet_names(num_classes: int) -> list[str] | None:
    """Short names of the ImageNet subset with `num_classes` classes (timm's own tables), or None."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
    except ImportError:
        return None
    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is None:
        return None
    return [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [f"{n} ({i})" if seen[n] > 1 else n for i, n in enumerate(names)]


def preprocessing_from_cfg(pretrained_cfg: dict[str, Any] | None, img_size: int) -> Preprocessing:
    """The checkpoint's preprocessing at `img_size` px: its mean, std, interpolation and crop_pct, and
    timm's defaults for what it does not say (ImageNet statistics, bicubic, crop_pct 0.875). An
    interpolation Foveal does not resize with (e.g. "nearest", "random") becomes bicubic."""
    cfg = pretrained_cfg or {}
    interpolation = cfg.get("interpolation", DEFAULT_INTERPOLATION)
    return Preprocessing(
        img_size,
        tuple(cfg.get("mean", IMAGENET_MEAN)),
        tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=interpolation if interpolation in INTERPOLATIONS else DEFAULT_INTERPOLATION,
        crop_pct=min(1.0, float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)),
    )
