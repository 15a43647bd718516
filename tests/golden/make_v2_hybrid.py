"""Made `v2-hybrid.safetensors` (a tiny hybrid: whitening stem, two conv groups, one attention block,
attention pooling) and `v2-cnn-airbench.safetensors` (a tiny airbench CNN, saved when its family was
still called "hybrid", before #31), with their expected outputs on the fixed inputs of v1-expected:
the logits through the inference path, and the explained path's pooling weights and attention.
Written by the code before #31 moved the models into families and layers, so the golden test shows that
nothing a saved hybrid computes changed. Run again only if the numerics change on purpose.

    python tests/golden/make_v2_hybrid.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from foveal.data.preprocess import Preprocessing
from foveal.models import build_model, model_config
from foveal.predictor.inference import predict_logits
from foveal.predictor.saved import ModelInfo, load_model, save_model

HERE = Path(__file__).parent
CLASSES = ["circle", "square", "triangle"]


def settled(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Running batch-norm statistics of its own (train-mode passes), so that eval mode reads them."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(images)
    return model.eval()


def save_golden(stem: str, config: object, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    preprocessing = Preprocessing(16, (0.45, 0.5, 0.55), (0.2, 0.25, 0.3))
    images = inputs.float() / 255  # (6, 3, 16, 16): the explained path's fixed input
    model = settled(build_model(config), images)
    save_model(HERE / f"{stem}.safetensors", model, ModelInfo(config, CLASSES, preprocessing, {"epoch": 1}))
    model, info = load_model(HERE / f"{stem}.safetensors")
    with torch.no_grad():
        explained = model.forward_explained(images)
    expected = {f"{stem}.logits": predict_logits(model, inputs, info.preprocessing)}
    if explained.pool_weights is not None:
        expected[f"{stem}.pool_weights"] = explained.pool_weights  # (6, h*w)
    for i, probs in enumerate(explained.attentions):
        expected[f"{stem}.attention.{i}"] = probs  # (6, heads, h*w, h*w)
    return expected


def main() -> None:
    inputs = load_file(str(HERE / "v1-expected.safetensors"))["inputs"]  # (6, 3, 16, 16) uint8
    torch.manual_seed(5)
    hybrid = model_config("hybrid-nano", num_classes=3, img_size=16, widths=(8, 16), num_heads=2)
    expected = save_golden("v2-hybrid", hybrid, inputs)
    torch.manual_seed(6)
    airbench = model_config("cnn-airbench-half", num_classes=3, img_size=16, widths=(8, 16, 16))
    expected |= save_golden("v2-cnn-airbench", airbench, inputs)
    save_file(expected, str(HERE / "v2-hybrid-expected.safetensors"))


if __name__ == "__main__":
    main()
