"""A public checkpoint read as what a Foveal model is built from: a timm-vit config that rebuilds it as
it is (its head, its classes, its image size), its state dict under the model's names, its class names and
its preprocessing.

Three kinds of reference:
- `hf-hub:timm/NAME[@REVISION]`: config.json and model.safetensors (else pytorch_model.bin) through the
  Hugging Face cache (hub.py);
- a folder in timm's `save_for_hf` layout: config.json (with "architecture") and model.safetensors or
  pytorch_model.bin;
- a weights file (.safetensors without Foveal's header, .bin, .pth): the ViT's shape from a timm
  config.json beside it, else from its tensors (weights.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from foveal.data.preprocess import Preprocessing
from foveal.errors import ConfigError, ModelFileError
from foveal.models import build_model
from foveal.models.config import FamilyConfig
from foveal.pretrained.hub import WEIGHT_FILES, hub_files, is_hub_reference, split_reference
from foveal.pretrained.timm_config import class_names, config_from_timm_json, preprocessing_from_cfg
from foveal.pretrained.weights import PICKLE_SUFFIXES, config_from_state, read_state

PREFIX = "vit."  # the timm module's name in a TimmViTClassifier: its keys are "vit." + timm's


@dataclass
class PretrainedSource:
    """A public checkpoint, ready to build: `build_model(config).load_state_dict(state)`."""

    reference: str  # what the user gave (a path, or "hf-hub:timm/...")
    config: FamilyConfig  # a TimmViTConfig that rebuilds the source as it is: its head, classes, img_size
    state: dict[str, torch.Tensor]  # keyed exactly as build_model(config).state_dict(): "vit." + timm's
    classes: list[str]  # config.json's label_names, ImageNet's names for an ImageNet head, else class_i
    preprocessing: Preprocessing  # the source's: img_size, mean, std, interpolation, crop_pct
    files: list[Path]  # the files read: config.json (when there is one), then the weights


def is_public_checkpoint(reference: str | Path) -> bool:
    """Whether `reference` names a public checkpoint rather than a Foveal model: a hub id (hf-hub:...),
    a folder holding timm's config.json (with a string "architecture"), or a weights file without
    Foveal's header (.safetensors, .bin, .pth). Reads at most a JSON file or a safetensors header."""
    if is_hub_reference(reference):
        return True
    path = Path(reference)
    if path.is_dir():
        return _timm_config(path / "config.json") is not None
    if not path.is_file():
        return False
    if path.suffix in PICKLE_SUFFIXES:
        return True
    return path.suffix == ".safetensors" and _is_foreign_safetensors(path)


def read_public_checkpoint(reference: str | Path) -> PretrainedSource:
    """Read a public checkpoint (see the module's docstring for the kinds of reference).

    Returns:
        Its PretrainedSource: config (pooling="source": the source's own pooling and head), state
        (float32, keyed as the model's state_dict), classes, preprocessing and the files read.

    Raises:
        ModelFileError: missing or unreadable files, a hub id neither cached nor downloadable now.
        ConfigError: not a ViT/DeiT classifier this family rebuilds, or timm / huggingface_hub missing.
    """
    config_file, weights_file, name = checkpoint_files(reference)
    data = _timm_config(config_file) if config_file is not None else None
    where = str(reference)
    timm_state = read_state(weights_file)
    if data is not None:
        config = config_from_timm_json(data, name=name, where=where)
    else:
        config = config_from_state(timm_state, name=name, where=where)
    if config.in_chans != 3:
        raise ConfigError(f"{where} reads {config.in_chans}-channel images; Foveal's images are RGB (3).")
    state = {PREFIX + k: v for k, v in timm_state.items()}
    _check_keys(state, config, where)
    return PretrainedSource(
        reference=where,
        config=config,
        state=state,
        classes=class_names(data or {}, config.num_classes),
        preprocessing=preprocessing_from_cfg((data or {}).get("pretrained_cfg"), config.img_size),
        files=[f for f in (config_file, weights_file) if f is not None],
    )


def checkpoint_files(reference: str | Path) -> tuple[Path | None, Path, str]:
    """(timm's config.json or None, the weights file, a name for the model) of a public checkpoint; a hub
    id's are fetched into the Hugging Face cache first (hub.py).

    Raises:
        ModelFileError: a missing folder, file or weights file; a hub miss.
    """
    if is_hub_reference(reference):
        config_file, weights_file = hub_files(str(reference))
        return config_file, weights_file, split_reference(str(reference))[0].split("/")[-1]
    path = Path(reference)
    if path.is_dir():
        for weights in WEIGHT_FILES:
            if (path / weights).is_file():
                return path / "config.json", path / weights, _name(path / "config.json", path.name)
        raise ModelFileError(
            f"{path} holds timm's config.json but no weights; expected {' or '.join(WEIGHT_FILES)} beside it."
        )
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist; expected a public checkpoint's folder or weights file.")
    beside = path.parent / "config.json"
    if _timm_config(beside) is not None:
        return beside, path, _name(beside, path.stem)
    return None, path, path.stem


def _name(config_file: Path, fallback: str) -> str:
    """The architecture and its weights' tag, e.g. "deit_tiny_patch16_224.fb_in1k", else `fallback`."""
    data = _timm_config(config_file) or {}
    tag = (data.get("pretrained_cfg") or {}).get("tag")
    architecture = data.get("architecture")
    return f"{architecture}.{tag}" if architecture and tag else architecture or fallback


def _timm_config(file: Path) -> dict | None:
    """timm's config.json as a dict, or None when `file` is not one (missing, not JSON, or a Foveal
    bundle's, whose "architecture" is a dict)."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("architecture"), str) else None


def _is_foreign_safetensors(path: Path) -> bool:
    """A readable safetensors file without Foveal's header (a corrupt one is left to Foveal's loader)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return "foveal" not in (handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def _check_keys(state: dict[str, torch.Tensor], config: FamilyConfig, where: str) -> None:
    """Raise ConfigError unless `state` has exactly the model's tensors, shape for shape."""
    with torch.device("meta"):  # shapes only: no weights made
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got == expected:
        return
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    reshaped = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    parts = [
        f"{label} {', '.join(k.removeprefix(PREFIX) for k in keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("reshaped", reshaped))
        if keys
    ]
    raise ConfigError(
        f"{where}: its weights are not those of the ViT its config describes ({'; '.join(parts)}); "
        "Foveal reads plain timm ViT and DeiT checkpoints."
    )
