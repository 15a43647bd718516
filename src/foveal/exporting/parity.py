"""Parity of an exported model with Foveal, checked on real images at several batch sizes.

Both sides read the same uint8 images and the same preprocessing: Foveal through its one inference
path (`predict_logits`), onnxruntime on the normalised batch. Bounds (PARITY_BOUNDS) are fp32
round-off, far below what could change a label; the export fails when one is not met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from foveal.errors import FovealError
from foveal.exporting.graph import ExportedModel, map_outputs, require
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import predict_logits
from foveal.predictor.onnx_network import INPUT

PARITY_BOUNDS = {
    "max_logit_difference": 1e-4,
    "max_pooled_difference": 1e-4,
    "max_pool_weight_difference": 1e-5,
    "max_rollout_difference": 1e-5,
    "top1_agreement": 1.0,
}
DIFFERENCES = (  # (Parity field, what it measures in words), as checked and as `foveal export` prints them
    ("max_logit_difference", "logit"),
    ("max_pooled_difference", "pooled-feature"),
    ("max_pool_weight_difference", "pool-weight"),
    ("max_rollout_difference", "rollout"),
)
BATCH_SIZES = (1, 7, 64)  # 1 and a prime: the batch axis is really dynamic, not the traced 2


@dataclass
class Parity:
    images: int
    data: str  # where the images came from
    batch_sizes: list[int]
    max_logit_difference: float
    max_pooled_difference: float | None  # the features the open-set score reads (None: older graph)
    max_pool_weight_difference: float | None  # None: the model has no pooling weights
    max_rollout_difference: float | None  # None: exported without --maps rollout
    top1_agreement: float  # share of images whose top class is the same
    bounds: dict

    def failures(self) -> list[str]:
        """What is out of bounds, in words (empty: parity holds)."""
        bounds, out = self.bounds, []
        for key, words in DIFFERENCES:
            gap = getattr(self, key)
            if gap is not None and gap > bounds[key]:
                out.append(f"max |{words} difference| {gap:.2e} > {bounds[key]:g}")
        if self.top1_agreement < bounds["top1_agreement"]:
            out.append(f"top-1 agreement {self.top1_agreement:.2%} < {bounds['top1_agreement']:.0%}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def check_parity(
    classifier: Classifier, onnx_path: str | Path, images: torch.Tensor, data: str, batch_sizes=BATCH_SIZES
) -> Parity:
    """Compare `classifier` and the ONNX file on uint8 images (N, 3, S, S), each batch size over all
    of them: logits against the one inference path, and every other output (pooled features, pool
    weights, rollout) against PyTorch's. Raises FovealError, naming the figures, when a bound is not met."""
    session = require("onnxruntime").InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    reference = predict_logits(classifier.model, images, classifier.preprocessing, device=classifier.device)
    maps = _pytorch_maps(classifier, images, names)  # output name -> (N, h*w)
    logit_gap, map_gaps, agree = 0.0, dict.fromkeys(maps, 0.0), []
    for batch_size in batch_sizes:
        for start in range(0, len(images), batch_size):
            batch = (
                classifier.preprocessing.normalize(images[start : start + batch_size]).contiguous().numpy()
            )
            outputs = dict(zip(names, session.run(None, {INPUT: batch})))
            expected = reference[start : start + batch_size].numpy()
            logit_gap = max(logit_gap, float(np.abs(outputs["logits"] - expected).max()))
            agree.append(outputs["logits"].argmax(1) == expected.argmax(1))
            for name, values in maps.items():
                gap = float(np.abs(outputs[name] - values[start : start + batch_size].numpy()).max())
                map_gaps[name] = max(map_gaps[name], gap)
    parity = Parity(
        images=len(images),
        data=data,
        batch_sizes=list(batch_sizes),
        max_logit_difference=logit_gap,
        max_pooled_difference=map_gaps.get("pooled"),
        max_pool_weight_difference=map_gaps.get("pool_weights"),
        max_rollout_difference=map_gaps.get("rollout"),
        top1_agreement=float(np.concatenate(agree).mean()),
        bounds=PARITY_BOUNDS,
    )
    if parity.failures():
        raise FovealError(f"the ONNX model does not match Foveal on {data}: {'; '.join(parity.failures())}.")
    return parity


@torch.inference_mode()
def _pytorch_maps(
    classifier: Classifier, images: torch.Tensor, names: list[str], batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """PyTorch's values of the graph's outputs after "logits" (`names`: "pooled" (N, C), then
    "pool_weights" for models with attention pooling and the extra maps, (N, h*w)), for the images'
    own view."""
    exported = ExportedModel(classifier.model, "none", map_outputs(names)).eval()
    out: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, len(images), batch_size):
        batch = classifier.preprocessing.normalize(images[start : start + batch_size].to(classifier.device))
        out.append(tuple(o.float().cpu() for o in exported(batch)[1:]))
    return {name: torch.cat([o[i] for o in out]) for i, name in enumerate(names[1:])}
