"""The Python face of a trained model: `foveal.load(path).predict(images)`.

A Classifier is a `Network` (predictor/network.py: PyTorch or onnxruntime, never asked which) with
what was saved beside it (`ModelInfo`: classes, preprocessing, open-set threshold). Explaining its
predictions is the explanation workflow's job, one layer up: `foveal.explain(classifier, images)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from foveal.data.files import check_image_tensor, decode_paths
from foveal.data.preprocess import Preprocessing
from foveal.errors import DataError
from foveal.models.contract import FovealModel
from foveal.predictor.inference import Outputs, predict_outputs
from foveal.predictor.network import Network, TorchNetwork
from foveal.predictor.onnx_network import load_onnx
from foveal.predictor.rejection import UNKNOWN, Rejection
from foveal.predictor.saved import ModelInfo, load_model_and_file
from foveal.runtime import resolve_device

ImageInput = str | Path | torch.Tensor


@dataclass
class Prediction:
    """Top-k labels of one image, most probable first, and whether the image looks like none of the
    classes (foveal/predictor/rejection.py)."""

    source: str  # the file path, or "tensor[i]" for tensors given directly
    labels: list[str]
    probabilities: list[float]
    indices: list[int]
    unknown: bool = False  # its familiarity fell below the model's threshold
    familiarity: float | None = None  # the model's familiarity score (None: rejection off)

    @property
    def label(self) -> str:
        """ "unknown" for a rejected image, else the most probable class (`labels[0]` either way)."""
        return UNKNOWN if self.unknown else self.labels[0]

    def to_dict(self) -> dict:
        return {"label": self.label, **asdict(self)}


class Classifier:
    """A loaded model with its class names and preprocessing, ready to predict and explain."""

    def __init__(
        self, network: Network, info: ModelInfo, device: torch.device, source: Path | None = None
    ) -> None:
        self.network = network
        self.info = info
        self.device = device
        self.source = source  # the saved model file it was loaded from

    @property
    def model(self) -> FovealModel:
        """The PyTorch model, for what only PyTorch does (ONNX export, gradients, parameters); a
        ConfigError naming the way out for a model run by onnxruntime."""
        return self.network.torch_model

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def preprocessing(self) -> Preprocessing:
        return self.info.preprocessing

    def outputs(self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 256) -> Outputs:
        """Logits float32 (N, num_classes) and pooled features (N, C) for image files or uint8 tensors
        (N, 3, S, S), through the one inference path (the saved preprocessing, test-time views
        included)."""
        batch = self._to_uint8(images)
        return predict_outputs(
            self.network, batch, self.preprocessing, device=self.device, batch_size=batch_size
        )

    def logits(self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Logits float32 (N, num_classes) for image files or uint8 tensors (N, 3, S, S)."""
        return self.outputs(images, batch_size).logits

    def probabilities(
        self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 256
    ) -> torch.Tensor:
        """Class probabilities float32 (N, num_classes) for image files or uint8 tensors (N, 3, S, S)."""
        return self.logits(images, batch_size).softmax(dim=1)

    def predict(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        top_k: int = 5,
        batch_size: int = 256,
        *,
        reject: bool = True,
    ) -> list[Prediction]:
        """Top-k predictions for each image (file paths, or uint8 tensors at the model's size).

        Args:
            images: paths, or a uint8 tensor (N, 3, S, S) / (3, S, S) already at img_size.
            top_k: how many labels per image (capped at the number of classes).
            reject: mark images below the model's familiarity threshold as unknown (`self.rejection`).

        Raises:
            DataError: an image file cannot be decoded (the message names it).
        """
        if isinstance(images, torch.Tensor) and images.ndim == 3:
            images = images.unsqueeze(0)
        outputs = self.outputs(images, batch_size)
        sources = (
            [f"tensor[{i}]" for i in range(len(outputs))]
            if isinstance(images, torch.Tensor)
            else [str(p) for p in images]
        )
        return self.predictions(outputs, sources, top_k, reject=reject)

    @property
    def rejection(self) -> Rejection | None:
        """The model's open-set threshold (None for a model saved without one)."""
        return self.info.rejection

    def predictions(
        self, outputs: Outputs, sources: Sequence[str], top_k: int = 5, *, reject: bool = True
    ) -> list[Prediction]:
        """Predictions from the outputs of N images named by `sources`: what `predict` and the
        server both answer."""
        probs = outputs.logits.float().softmax(dim=1)
        values, indices = probs.topk(max(1, min(top_k, probs.shape[1])), dim=1)
        rejection = self.rejection if reject else None
        unknown, scores = [False] * len(probs), [None] * len(probs)
        if rejection is not None:
            familiarity = rejection.familiarity(outputs)  # (N,), computed once for both
            unknown, scores = (familiarity < rejection.threshold).tolist(), familiarity.tolist()
        return [
            Prediction(src, [self.classes[j] for j in idx.tolist()], val.tolist(), idx.tolist(), out, score)
            for src, val, idx, out, score in zip(sources, values, indices, unknown, scores)
        ]

    @property
    def methods(self) -> list[str]:
        """The explanation methods this model can show (an ONNX model: the maps in its graph)."""
        return self.network.methods

    def check_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """`images` if it is uint8 (N, 3, S, S) at the model's size (S), else a DataError saying so."""
        return check_image_tensor(images, self.preprocessing.img_size)

    def _to_uint8(self, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            return self.check_tensor(images)
        if not images:
            raise DataError("no images given; expected image file paths or a uint8 tensor.")
        return torch.stack([self.preprocessing.decode(path) for path in images])


def load(path: str | Path, device: str = "auto") -> Classifier:
    """Load a saved model (a run folder, a model folder or bundle, a .safetensors file, or a
    model.onnx Foveal exported, which runs on the CPU through onnxruntime) for prediction; or a public
    timm ViT/DeiT checkpoint (`hf-hub:timm/NAME`, a folder with timm's config.json and weights, or a
    .safetensors/.bin/.pth state dict), with its own classes and preprocessing."""
    if Path(path).suffix == ".onnx":
        network, info = load_onnx(Path(path))
        return Classifier(network, info, torch.device("cpu"), Path(path))
    resolved = resolve_device(device)
    model, info, file = load_model_and_file(path, resolved)
    return Classifier(TorchNetwork(model), info, resolved, file)


def predict_files(
    classifier: Classifier, files: list[Path], top_k: int = 5, batch_size: int = 256, *, reject: bool = True
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict every decodable file; returns the predictions and (path, reason) of files skipped."""
    images, good, failed = decode_paths(files, classifier.preprocessing)
    predictions = classifier.predict(images, top_k, batch_size, reject=reject)
    for prediction, path in zip(predictions, good):
        prediction.source = str(path)
    return predictions, failed
