"""ONNX export: one self-contained model.onnx that answers as Foveal does, and still draws heatmaps.

Inputs: `pixel_values` float32 (B, 3, S, S), normalised as the preprocessing says; B is dynamic.
Outputs: `logits` (B, K), over the preprocessing's test-time views (the flip is in the graph), and,
for models with attention pooling, `pool_weights` (B, h*w): each token's weight, so an exported
model can still show where it looked. The preprocessing, class names and Foveal version are in the
file's `metadata_props`.

Opset 18 (OPSET): the exporter's default, run by every onnxruntime since 1.14. Below opset 23 the
fused attention is written as MatMul + Softmax rather than the `Attention` op, which onnxruntime
still has open bugs with (microsoft/onnxruntime #26262, #29020) and which its static quantiser
cannot handle (#25932).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from foveal import __version__
from foveal.classifier import Classifier
from foveal.errors import FovealError
from foveal.exporting.graph import INPUT, ExportedModel, output_names, require
from foveal.exporting.parity import check_parity
from foveal.io import atomic_write, atomic_write_json
from foveal.models import config_to_dict

OPSET = 18
EXAMPLE = Path(__file__).with_name("predict_example.py")  # copied into the bundle as predict.py


def write_onnx(classifier: Classifier, path: str | Path, names: list[str]) -> Path:
    """Export `classifier` to a single ONNX file at `path` (no external-data side file) whose outputs
    are `names` (`output_names`), checked by onnx's full checker, with its preprocessing and classes
    in `metadata_props`."""
    onnx = require("onnx")

    wrapper = ExportedModel(classifier.model, classifier.preprocessing.test_time_views).eval().cpu()
    size = classifier.preprocessing.img_size
    example = torch.zeros(2, 3, size, size)  # batch 2: a batch-1 example can freeze the batch axis
    batch = torch.export.Dim("batch", min=1, max=65_536)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's progress chatter
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                external_data=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=names,
                dynamic_shapes={INPUT: {0: batch}},
                verbose=False,
            )
    except Exception as error:  # noqa: BLE001  (the exporter raises many kinds; the user needs one line)
        raise FovealError(
            f"this model cannot be exported to ONNX ({type(error).__name__}: {str(error).splitlines()[0]})."
        ) from None
    proto = program.model_proto
    metadata = {
        "foveal_version": __version__,
        "preprocessing": json.dumps(classifier.preprocessing.to_dict()),
        "id2label": json.dumps({str(i): c for i, c in enumerate(classifier.classes)}),
        "architecture": json.dumps(config_to_dict(classifier.info.config)),
        "inputs": f"{INPUT}: float32 (batch, 3, {size}, {size}), normalised as `preprocessing` says",
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    return atomic_write(path, lambda temp: onnx.save_model(proto, temp))


def export_onnx(classifier: Classifier, folder: Path, images: torch.Tensor, data: str) -> dict:
    """Write folder/model.onnx, folder/parity.json and folder/predict.py (numpy + Pillow +
    onnxruntime, no Foveal): the model is kept only when its parity with Foveal on `images`
    (uint8 (N, 3, S, S)) holds. Returns what config.json records of it."""
    final, names = folder / "model.onnx", output_names(classifier)
    candidate = write_onnx(classifier, folder / ".model.onnx.unchecked", names)
    try:
        parity = check_parity(classifier, candidate, images, data)
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    candidate.replace(final)
    atomic_write_json(folder / "parity.json", parity.to_dict())
    atomic_write(folder / "predict.py", lambda temp: shutil.copyfile(EXAMPLE, temp))
    return {
        "file": final.name,
        "opset": OPSET,
        "inputs": [INPUT],
        "outputs": names,
        "parity": "parity.json",
    }
