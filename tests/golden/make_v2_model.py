"""Made `v2-attention-flip.safetensors` (model format foveal.model/2, preprocessing version 2, which
carries the test-time views) and its expected logits on the fixed inputs of v1-expected. Run again
only if the saved format changes on purpose; the golden test then shows what changed.

    python tests/golden/make_v2_model.py
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


def main() -> None:
    inputs = load_file(str(HERE / "v1-expected.safetensors"))["inputs"]
    torch.manual_seed(4)
    config = model_config("foveal-nano", num_classes=3, img_size=16, embed_dim=32, tokenizer_channels=8)
    preprocessing = Preprocessing(16, (0.45, 0.5, 0.55), (0.2, 0.25, 0.3), test_time_views="flip")
    info = ModelInfo(config, ["circle", "square", "triangle"], preprocessing, {"epoch": 1})
    path = save_model(HERE / "v2-attention-flip.safetensors", build_model(config), info)
    model, info = load_model(path)
    logits = predict_logits(model, inputs, info.preprocessing)
    save_file({"v2-attention-flip.logits": logits}, str(HERE / "v2-expected.safetensors"))


if __name__ == "__main__":
    main()
