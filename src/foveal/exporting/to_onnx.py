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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from foveal import __version__
from foveal.data.imageset import ImageSet
from foveal.errors import FovealError
from foveal.exporting.graph import ExportedModel, map_outputs, output_names, require
from foveal.exporting.parity import check_parity
from foveal.exporting.quantize import MAX_ACCURACY_DROP, check_int8, quantize_int8
from foveal.io import atomic_write, atomic_write_json
from foveal.models import config_to_dict
from foveal.predictor.classifier import Classifier
from foveal.predictor.onnx_network import INPUT

OPSET = 18
EXAMPLE = Path(__file__).with_name("predict_example.py")  # copied into the bundle as predict.py


def write_onnx(classifier: Classifier, path: str | Path, names: list[str]) -> Path:
    """Export `classifier` to a single ONNX file at `path` (no external-data side file) whose outputs
    are `names` (`output_names`), checked by onnx's full checker, with its preprocessing and classes
    in `metadata_props`."""
    onnx = require("onnx")

    maps = map_outputs(names)
    views = classifier.preprocessing.test_time_views
    wrapper = ExportedModel(classifier.model, views, maps).eval().cpu()
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
    with torch.no_grad():
        grid = classifier.model.forward_features(example[:1].to(classifier.device)).grid
    metadata = {
        "foveal_version": __version__,
        "preprocessing": json.dumps(classifier.preprocessing.to_dict()),
        "id2label": json.dumps({str(i): c for i, c in enumerate(classifier.classes)}),
        "architecture": json.dumps(config_to_dict(classifier.info.config)),
        "token_grid": json.dumps(list(grid)),  # (h, w): pool_weights and maps are (B, h*w) on it
        "inputs": f"{INPUT}: float32 (batch, 3, {size}, {size}), normalised as `preprocessing` says",
    }
    if classifier.rejection is not None:  # foveal/predictor/rejection.py: a threshold on the graph's logits
        metadata["rejection"] = json.dumps(classifier.rejection.to_dict())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    return atomic_write(path, lambda temp: onnx.save_model(proto, temp))


def export_onnx(
    classifier: Classifier,
    folder: Path,
    held_out: ImageSet,
    data: str,
    *,
    maps: Sequence[str] = (),
    int8: bool = False,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    force: bool = False,
) -> dict:
    """Write folder/model.onnx, parity.json and predict.py (numpy + Pillow + onnxruntime, no
    Foveal); with `int8`, also model.int8.onnx and int8.json. Each model is kept only when its
    check on the held-out images holds: parity with Foveal for fp32, an accuracy loss of at most
    `max_accuracy_drop` points for INT8 (unless `force`). Returns what config.json records."""
    final, names = folder / "model.onnx", output_names(classifier, maps)
    candidate = write_onnx(classifier, folder / ".model.onnx.unchecked", names)
    with _removed_on_failure(candidate):
        parity = check_parity(classifier, candidate, held_out.images, data)
    candidate.replace(final)
    atomic_write_json(folder / "parity.json", parity.to_dict())
    atomic_write(folder / "predict.py", lambda temp: shutil.copyfile(EXAMPLE, temp))
    record = {
        "file": final.name,
        "opset": OPSET,
        "inputs": [INPUT],
        "outputs": names,
        "parity": "parity.json",
    }
    if not int8:  # an INT8 model left from an earlier export would no longer match model.onnx
        for stale in ("model.int8.onnx", "int8.json"):
            (folder / stale).unlink(missing_ok=True)
        return record
    quantized = quantize_int8(final, folder / ".model.int8.onnx.unchecked")
    with _removed_on_failure(quantized):
        check = check_int8(
            final,
            quantized,
            classifier.preprocessing,
            held_out,
            data,
            max_accuracy_drop=max_accuracy_drop,
            force=force,
        )
    quantized.replace(folder / "model.int8.onnx")
    atomic_write_json(folder / "int8.json", check.to_dict())
    record["int8"] = {"file": "model.int8.onnx", "check": "int8.json", "quantized_ops": check.quantized_ops}
    return record


@contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Delete the unchecked file `path` if its check fails: a model that fails is never left behind."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise
