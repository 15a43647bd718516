"""The Python face of a trained model: `foveal.load(path).predict(images)`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from foveal.data.decode import ImageDecodeError, decode_image, is_image_file
from foveal.errors import DataError, FovealError
from foveal.inference import predict_logits
from foveal.runtime import resolve_device
from foveal.saved import ModelInfo, load_model

ImageInput = str | Path | torch.Tensor


@dataclass
class Prediction:
    """Top-k labels of one image, most probable first."""

    source: str  # the file path, or "tensor[i]" for tensors given directly
    labels: list[str]
    probabilities: list[float]
    indices: list[int]

    @property
    def label(self) -> str:
        return self.labels[0]

    def to_dict(self) -> dict:
        return asdict(self)


class Classifier:
    """A loaded model with its class names and preprocessing, ready to predict."""

    def __init__(self, model: torch.nn.Module, info: ModelInfo, device: torch.device) -> None:
        self.model = model
        self.info = info
        self.device = device

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    def probabilities(
        self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 256
    ) -> torch.Tensor:
        """Class probabilities float32 (N, num_classes) for image files or uint8 tensors (N, 3, S, S)."""
        batch = self._to_uint8(images)
        logits = predict_logits(
            self.model,
            batch,
            self.info.preprocessing,
            device=self.device,
            batch_size=batch_size,
            flip=self.info.test_time_flip,
        )
        return logits.softmax(dim=1)

    def predict(
        self, images: Sequence[ImageInput] | torch.Tensor, top_k: int = 5, batch_size: int = 256
    ) -> list[Prediction]:
        """Top-k predictions for each image (file paths, or uint8 tensors at the model's size).

        Args:
            images: paths, or a uint8 tensor (N, 3, S, S) / (3, S, S) already at img_size.
            top_k: how many labels per image (capped at the number of classes).

        Raises:
            DataError: an image file cannot be decoded (the message names it).
        """
        if isinstance(images, torch.Tensor) and images.ndim == 3:
            images = images.unsqueeze(0)
        probs = self.probabilities(images, batch_size)
        k = max(1, min(top_k, probs.shape[1]))
        values, indices = probs.topk(k, dim=1)
        sources = (
            [f"tensor[{i}]" for i in range(len(probs))]
            if isinstance(images, torch.Tensor)
            else [str(p) for p in images]
        )
        return [
            Prediction(src, [self.classes[j] for j in idx.tolist()], val.tolist(), idx.tolist())
            for src, val, idx in zip(sources, values, indices)
        ]

    def explain(self, images: Sequence[ImageInput] | torch.Tensor, method: str | None = None, **options):
        """Maps of where the model looked for each image; see `foveal.explanation.explain`."""
        from foveal.explanation import explain

        return explain(self, images, method=method, **options)

    def check_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """`images` if it is uint8 (N, 3, S, S) at the model's size (S), else a DataError saying so."""
        size = self.info.preprocessing.img_size
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise DataError(
                f"expected a uint8 tensor of shape (N, 3, {size}, {size}), got {images.dtype} "
                f"{tuple(images.shape)}; pass file paths to have Foveal resize them."
            )
        return images

    def _to_uint8(self, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        size = self.info.preprocessing.img_size
        if isinstance(images, torch.Tensor):
            return self.check_tensor(images)
        if not images:
            raise DataError("no images given; expected image file paths or a uint8 tensor.")
        return torch.stack([decode_image(path, size) for path in images])


def load(path: str | Path, device: str = "auto") -> Classifier:
    """Load a saved model (a run folder, a model folder or a .safetensors file) for prediction."""
    resolved = resolve_device(device)
    model, info = load_model(path, resolved)
    return Classifier(model, info, resolved)


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise DataError(f"folder {path} has no image files (.jpg, .png, ...).")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path} does not exist; expected image files or folders of images.")
    return files


def decode_paths(files: list[Path], size: int) -> tuple[torch.Tensor, list[Path], list[tuple[str, str]]]:
    """Decode every file it can: uint8 images (N, 3, size, size), their paths, and (path, reason) of
    the files skipped. Raises FovealError when none decodes."""
    good, images, failed = [], [], []
    for path in files:
        try:
            images.append(decode_image(path, size))
            good.append(path)
        except ImageDecodeError as error:
            failed.append((str(path), error.reason))
    if not good:
        raise FovealError(
            f"none of the {len(files)} files could be decoded (first: {failed[0][0]}: {failed[0][1]})."
        )
    return torch.stack(images), good, failed


def predict_files(
    classifier: Classifier, files: list[Path], top_k: int = 5, batch_size: int = 256
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict every decodable file; returns the predictions and (path, reason) of files skipped."""
    images, good, failed = decode_paths(files, classifier.info.preprocessing.img_size)
    predictions = classifier.predict(images, top_k, batch_size)
    for prediction, path in zip(predictions, good):
        prediction.source = str(path)
    return predictions, failed
