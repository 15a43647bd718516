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

from foveal.classifier import Classifier
from foveal.errors import FovealError
from foveal.exporting.graph import INPUT, ExportedModel, require
from foveal.inference import predict_logits

PARITY_BOUNDS = {"max_logit_difference": 1e-4, "max_pool_weight_difference": 1e-5, "top1_agreement": 1.0}
BATCH_SIZES = (1, 7, 64)  # 1 and a prime: the batch axis is really dynamic, not the traced 2


@dataclass
class Parity:
    images: int
    data: str  # where the images came from
    batch_sizes: list[int]
    max_logit_difference: float
    max_pool_weight_difference: float | None  # None: the model has no pooling weights
    top1_agreement: float  # share of images whose top class is the same
    bounds: dict

    def failures(self) -> list[str]:
        """What is out of bounds, in words (empty: parity holds)."""
        bounds, out = self.bounds, []
        if self.max_logit_difference > bounds["max_logit_difference"]:
            out.append(
                f"max |logit difference| {self.max_logit_difference:.2e} > {bounds['max_logit_difference']:g}"
            )
        pool = self.max_pool_weight_difference
        if pool is not None and pool > bounds["max_pool_weight_difference"]:
            out.append(f"max |pool-weight difference| {pool:.2e} > {bounds['max_pool_weight_difference']:g}")
        if self.top1_agreement < bounds["top1_agreement"]:
            out.append(f"top-1 agreement {self.top1_agreement:.2%} < {bounds['top1_agreement']:.0%}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def check_parity(
    classifier: Classifier, onnx_path: str | Path, images: torch.Tensor, data: str, batch_sizes=BATCH_SIZES
) -> Parity:
    """Compare `classifier` and the ONNX file on uint8 images (N, 3, S, S), each batch size over all
    of them. Raises FovealError, naming the figures, when a bound is not met."""
    session = require("onnxruntime").InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = predict_logits(classifier.model, images, classifier.preprocessing, device=classifier.device)
    weights = _pool_weights(classifier, images)
    logit_gap, pool_gap, agree = 0.0, None if weights is None else 0.0, []
    for batch_size in batch_sizes:
        for start in range(0, len(images), batch_size):
            batch = (
                classifier.preprocessing.normalize(images[start : start + batch_size]).contiguous().numpy()
            )
            outputs = session.run(None, {INPUT: batch})
            expected = reference[start : start + batch_size].numpy()
            logit_gap = max(logit_gap, float(np.abs(outputs[0] - expected).max()))
            agree.append(outputs[0].argmax(1) == expected.argmax(1))
            if weights is not None:
                gap = np.abs(outputs[1] - weights[start : start + batch_size].numpy()).max()
                pool_gap = max(pool_gap, float(gap))
    parity = Parity(
        images=len(images),
        data=data,
        batch_sizes=list(batch_sizes),
        max_logit_difference=logit_gap,
        max_pool_weight_difference=pool_gap,
        top1_agreement=float(np.concatenate(agree).mean()),
        bounds=PARITY_BOUNDS,
    )
    if parity.failures():
        raise FovealError(f"the ONNX model does not match Foveal on {data}: {'; '.join(parity.failures())}.")
    return parity


@torch.inference_mode()
def _pool_weights(classifier: Classifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor | None:
    """Foveal's pooling weights (N, h*w) of the images' own view, or None for a model without them."""
    exported = ExportedModel(classifier.model, "none").eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = classifier.preprocessing.normalize(images[start : start + batch_size].to(classifier.device))
        outputs = exported(batch)
        if len(outputs) == 1:
            return None
        out.append(outputs[1].float().cpu())
    return torch.cat(out)
