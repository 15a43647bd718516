"""A self-describing model bundle: a folder another person (or tool) can use without the run.

    bundle/
      config.json        architecture, id2label / label2id, the full preprocessing, evaluation
      model.safetensors  the weights, with Foveal's own header (foveal.load reads the folder)
      README.md          a model card: Hugging Face front matter, data, metrics, use, limits

The card's front matter follows the Hugging Face Hub's model-card metadata (pipeline_tag,
library_name, license, datasets, model-index), so a bundle can be uploaded as it is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from foveal import __version__
from foveal.errors import FovealError
from foveal.exporting.card import model_card
from foveal.exporting.facts import BUNDLE_FORMAT, RunFacts, run_facts
from foveal.io import atomic_write, atomic_write_json, atomic_write_text
from foveal.models import config_to_dict
from foveal.predictor.saved import ModelInfo, load_model, resolve_model_path, save_model
from foveal.pretrained.checkpoint import is_public_checkpoint


def write_bundle(
    model: str | Path, out: str | Path, *, license: str = "other", name: str | None = None
) -> Path:
    """Write a bundle of the saved model `model` (a run folder, a model file or a bundle, or a public
    checkpoint: foveal/pretrained/) into `out`.

    Args:
        license: the card's license identifier (e.g. apache-2.0, mit); "other" when unsaid.
        name: the model's name on its card [default: the folder `out`'s name].

    Returns:
        The bundle folder.

    Raises:
        ModelFileError: `model` is neither a model Foveal saved nor a public checkpoint.
        FovealError: `out` cannot be written, or already holds something other than a bundle.
    """
    file = resolve_model_path(model)
    public = is_public_checkpoint(model)
    loaded, info = load_model(model)  # refuses anything that is not a readable Foveal model or checkpoint
    out = Path(out)
    _check_destination(out, file)
    facts = run_facts(Path(model), file)
    name = name or out.resolve().name
    try:
        if public:  # its weights file has no Foveal header: written as a Foveal model
            save_model(out / "model.safetensors", loaded, info)
        else:
            atomic_write(out / "model.safetensors", lambda temp: shutil.copyfile(file, temp))
        atomic_write_json(out / "config.json", bundle_config(info, facts, _sha256(out / "model.safetensors")))
        atomic_write_text(out / "README.md", model_card(name, info, facts, license))
    except OSError as error:
        raise FovealError(f"cannot write the bundle into {out} ({error.strerror or error}).") from None
    return out


def add_to_bundle_config(bundle: Path, key: str, value: Any) -> None:
    """Record `value` under `key` in a bundle's config.json (e.g. the ONNX file beside the weights)."""
    path = Path(bundle) / "config.json"
    atomic_write_json(path, {**json.loads(path.read_text()), key: value})


def bundle_config(info: ModelInfo, facts: RunFacts, weights_sha256: str) -> dict[str, Any]:
    """config.json of a bundle: JSON keys are strings, so id2label's keys are "0", "1", ..."""
    evaluation = facts.evaluation or {}
    return {
        "format": BUNDLE_FORMAT,
        "foveal_version": __version__,
        "library_name": "foveal",
        "architecture": config_to_dict(info.config),
        "num_labels": len(info.classes),
        "id2label": {str(i): label for i, label in enumerate(info.classes)},
        "label2id": {label: i for i, label in enumerate(info.classes)},
        "preprocessing": info.preprocessing.to_dict(),
        # the open-set threshold (predictor/rejection.py); None for older models. The mahalanobis score's
        # class means and covariance are in the model files (model.onnx's metadata "rejection").
        "rejection": None if info.rejection is None else info.rejection.summary(),
        "weights": {"file": "model.safetensors", "sha256": weights_sha256},
        "training": {
            "data": facts.data,
            "source": facts.source,
            "train_images": facts.train_images,
            "val_images": facts.val_images,
            "epoch": info.extra.get("epoch"),
        },
        "evaluation": {
            k: evaluation.get(k) for k in ("data", "num_samples", "top1", "top5", "macro_f1", "top_k")
        }
        if evaluation
        else None,
    }


def _check_destination(out: Path, file: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FovealError(f"{out} is a file; give a folder for the bundle.")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FovealError(f"{out} is not empty and holds no bundle; give a new or empty folder.")
    if out.is_dir() and (out / "model.safetensors").resolve() == file.resolve():
        raise FovealError(f"{out} is the bundle being exported; give another folder.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
