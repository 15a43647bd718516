"""Made the committed `v1-*.safetensors` models with Foveal 0.1.0 as released (commit 99700fc), before
the preprocessing object carried the test-time views. Kept to show how they were made; it is not
run again, since the point of these files is that they were written by the old code.

    python tests/golden/make_v1_models.py   # on commit 99700fc
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from foveal.data.preprocess import Preprocessing
from foveal.models import build_model, model_config
from foveal.predictor.classifier import Classifier
from foveal.predictor.inference import predict_logits
from foveal.predictor.network import TorchNetwork
from foveal.predictor.saved import ModelInfo, load_model, save_model

HERE = Path(__file__).parent
CLASSES = ["circle", "square", "triangle"]
MODELS = {  # file stem: (preset, overrides, trained with --tta-flip)
    "v1-attention-flip": ("foveal-tiny", {}, True),
    "v1-attention": ("foveal-nano", {"embed_dim": 32, "tokenizer_channels": 8}, False),
    "v1-vit": ("vit-tiny-4", {"embed_dim": 32, "depth": 1}, False),
    "v1-cnn-flip": ("cnn-resnet8", {"widths": (8, 16), "blocks": (1, 1)}, True),
}


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=generator)
    expected = {"inputs": inputs}
    for n, (stem, (preset, overrides, flip)) in enumerate(MODELS.items()):
        torch.manual_seed(n)
        config = model_config(preset, num_classes=3, img_size=16, **overrides)
        model = build_model(config)
        with torch.no_grad():  # non-trivial batch-norm statistics and biases, as after training
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.2, 0.2)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.1, 0.1)
        preprocessing = Preprocessing(16, (0.45, 0.5, 0.55), (0.2, 0.25, 0.3))
        extra = {"train_config": {"tta_flip": flip, "model": preset}, "epoch": 1, "val_top1": 0.5}
        path = save_model(
            HERE / f"{stem}.safetensors", model, ModelInfo(config, CLASSES, preprocessing, extra)
        )
        loaded, info = load_model(path)
        classifier = Classifier(TorchNetwork(loaded), info, torch.device("cpu"))
        expected[f"{stem}.probabilities"] = classifier.probabilities(inputs)
        expected[f"{stem}.logits"] = predict_logits(
            loaded, inputs, info.preprocessing, flip=info.test_time_flip
        )
    save_file(expected, str(HERE / "v1-expected.safetensors"))


if __name__ == "__main__":
    main()
