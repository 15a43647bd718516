"""Saved models: one safetensors file holding the weights and, in its header, the JSON that rebuilds
the model (architecture config, class names, preprocessing). Loading one never unpickles anything.

A public checkpoint (a timm ViT/DeiT: `hf-hub:timm/NAME`, a folder with timm's config.json, a weights
file without Foveal's header; foveal/pretrained/) loads here too, as a timm-vit model with its own
classes and preprocessing; its pickle files only through `torch.load(weights_only=True)`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.data.preprocess import Preprocessing
from foveal.errors import FovealError, ModelFileError
from foveal.io import atomic_write
from foveal.models import ModelConfig, build_model, config_from_dict, config_to_dict
from foveal.predictor.rejection import Rejection
from foveal.pretrained.checkpoint import checkpoint_files, is_public_checkpoint, read_public_checkpoint
from foveal.runtime import to_fast_layout

FORMAT = "foveal.model/2"  # /1 (Foveal 0.1.0) kept the test-time flip among the training options
READABLE_FORMATS = ("foveal.model/1", FORMAT)
MODEL_FILE_NAMES = ("best.safetensors", "model.safetensors", "last.safetensors")


@dataclass
class ModelInfo:
    """Everything besides the weights that a saved model carries."""

    config: ModelConfig
    classes: list[str]
    preprocessing: Preprocessing
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. epoch, val_top1, training config
    # (stored entry, its Rejection): decoded once, not on every prediction
    _rejection: tuple[Any, Rejection | None] = field(
        default=(None, None), init=False, repr=False, compare=False
    )

    @property
    def rejection(self) -> Rejection | None:
        """The open-set threshold calibrated on the run's held-out images (None: a model saved
        before Foveal calibrated one, or one whose held-out outputs were not finite)."""
        stored = self.extra.get("rejection")
        if stored is None:
            return None
        if self._rejection[0] is not stored:
            self._rejection = (stored, Rejection.from_dict(stored))
        return self._rejection[1]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "model": config_to_dict(self.config),
                "classes": self.classes,
                "preprocessing": self.preprocessing.to_dict(),
                "extra": self.extra,
            }
        )

    @classmethod
    def from_json(cls, text: str, source: Path) -> ModelInfo:
        try:
            data = json.loads(text)
            if data.get("format") not in READABLE_FORMATS:
                raise ValueError(f"format {data.get('format')!r}, expected one of {READABLE_FORMATS}")
            extra = dict(data.get("extra", {}))
            legacy_flip = bool(extra.get("train_config", {}).get("tta_flip", False))  # format /1
            info = cls(
                config_from_dict(data["model"]),
                list(data["classes"]),
                Preprocessing.from_dict(data["preprocessing"], legacy_flip=legacy_flip),
                extra,
            )
            _ = info.rejection  # a damaged threshold is found here, as a damaged model file
            return info
        except (ValueError, KeyError, TypeError, FovealError) as error:
            raise ModelFileError(f"{source} is not a Foveal model ({error}).") from None


def save_model(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write `model`'s weights and `info` to `path` atomically (temp file, fsync, rename)."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda temp: save_file(state, temp, metadata={"foveal": info.to_json()}))


def resolve_model_path(path: str | Path) -> Path:
    """A saved model file from a file path, a run folder (its best model) or a model folder; for a
    public checkpoint, its weights file (a hub id's in the Hugging Face cache, fetched if need be)."""
    if is_public_checkpoint(path):
        return checkpoint_files(path)[1]
    path = Path(path)
    if path.is_dir():
        for folder in (path / "weights", path):
            for name in MODEL_FILE_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise ModelFileError(
            f"no saved model in {path}; expected a run folder (with weights/best.safetensors) "
            "or a .safetensors file written by Foveal."
        )
    if not path.exists():
        raise ModelFileError(f"model {path} does not exist; expected a run folder or a .safetensors file.")
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Rebuild a saved model (or a public checkpoint) in eval mode on `device`; corrupt or foreign files
    raise ModelFileError."""
    model, info, _ = load_model_and_file(path, device)
    return model, info


def load_model_and_file(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ModelInfo, Path]:
    """`load_model`, and the file its weights came from (what `resolve_model_path` gives)."""
    if is_public_checkpoint(path):
        return load_public_checkpoint(path, device)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = resolve_model_path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{file} is not a readable safetensors model ({error}); was it truncated or "
            "written by another tool?"
        ) from None
    if "foveal" not in metadata:
        raise ModelFileError(f"{file} has no Foveal metadata; expected a model saved by Foveal.")
    info = ModelInfo.from_json(metadata["foveal"], file)
    model = build_model(info.config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else lines[0]  # the first mismatch, not torch's heading
        raise ModelFileError(f"{file}: weights do not match the stored architecture ({first}).") from None
    return to_fast_layout(model.to(device)).eval(), info, file


def load_public_checkpoint(
    reference: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ModelInfo, Path]:
    """A public checkpoint (foveal/pretrained/) as a model in eval mode on `device`, with its own classes
    and preprocessing (`info.extra["source"]`: `reference`), and its weights file."""
    source = read_public_checkpoint(reference)
    with torch.device("meta"):  # no random weights made only to be overwritten
        model = build_model(source.config)
    model.load_state_dict(source.state, strict=True, assign=True)  # keys and shapes checked when read
    info = ModelInfo(source.config, source.classes, source.preprocessing, extra={"source": source.reference})
    return to_fast_layout(model.to(device)).eval(), info, source.files[-1]
