"""The served model: loaded and warmed in the background (so /livez answers at once), with its batcher."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from foveal.errors import FovealError
from foveal.predictor.classifier import Classifier, load
from foveal.predictor.inference import Outputs
from foveal.runtime import cores_each
from foveal.serving.batcher import DynamicBatcher
from foveal.serving.errors import ApiError, log
from foveal.serving.limits import RETRY_AFTER_S
from foveal.serving.metrics import ServerMetrics
from foveal.serving.settings import ServeSettings


class ModelHost:
    """The loaded model and its batcher; loaded in the background so /livez answers at once."""

    def __init__(
        self, settings: ServeSettings, metrics: ServerMetrics, classifier: Classifier | None
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.ready = False
        self.failure: str | None = None
        self.sha256 = ""
        self.batcher = DynamicBatcher(
            self._outputs,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            metrics=metrics,
        )

    def _outputs(self, images: torch.Tensor) -> list[Outputs]:
        """One Outputs per image of uint8 images (B, 3, S, S), through the one inference path."""
        return self.classifier.outputs(images).rows()

    def load_and_warm(self) -> None:
        """On the model thread: set the thread count once, load, hash the weights, run one batch."""
        settings = self.settings
        threads = settings.threads or cores_each(settings.workers)
        torch.set_num_threads(threads)
        try:
            if self.classifier is None:
                self.classifier = load(resolve_served_model(settings), device="auto")
            self.sha256 = file_sha256(self.classifier.source)
            size = self.classifier.preprocessing.img_size
            self._outputs(torch.zeros(min(settings.max_batch, 8), 3, size, size, dtype=torch.uint8))
            self.ready = True
            unit = "thread" if threads == 1 else "threads"
            log.info("model %s ready (%d %s)", self.model_id, threads, unit)
        except FovealError as error:
            self.failure = str(error)
            log.error("the model could not be loaded: %s", error)

    @property
    def model_id(self) -> str:
        return f"{self.classifier.info.config.name}@{self.sha256[:12]}" if self.classifier else ""

    def require_ready(self) -> Classifier:
        if not self.ready:
            message = self.failure or "the model is still loading; try again in a moment."
            raise ApiError(503, message, {"Retry-After": str(RETRY_AFTER_S)})
        return self.classifier


def resolve_served_model(settings: ServeSettings) -> Path:
    """The file to load: MODEL itself, or with --runtime onnx and a bundle or run folder, the model.onnx
    in it or in the bundle `foveal export RUN --format onnx` wrote beside it (RUN-bundle)."""
    model = Path(settings.model)
    if model.suffix == ".onnx" or settings.runtime != "onnx":
        if settings.runtime == "torch" and model.suffix == ".onnx":
            raise FovealError(
                f"{model} is an ONNX model; serve it with --runtime onnx (or leave --runtime out)."
            )
        return model
    for candidate in (model / "model.onnx", model.with_name(model.name + "-bundle") / "model.onnx"):
        if candidate.is_file():
            return candidate
    raise FovealError(
        f"--runtime onnx needs a model.onnx; none is in {model} or {model.name}-bundle. Export one first: "
        f"foveal export {model} --format onnx"
    )


def file_sha256(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
