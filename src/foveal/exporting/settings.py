"""What `foveal export` and `foveal bench` are told: their options are these fields (cli/options.py).

Apart from the exporting and timing code, and light to import: the command line is generated from
these classes before any command runs, and saying `foveal --help` must not wait for torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from foveal.config import option
from foveal.errors import ConfigError

MAX_ACCURACY_DROP = 1.0  # points of top-1; a larger loss refuses the INT8 model unless forced


@dataclass(frozen=True)
class ExportSettings:
    """How `foveal.export` packages a model (its keyword arguments, with the same defaults)."""

    out: str | None = option(
        None,
        "The bundle folder [default: beside MODEL, named MODEL-bundle; MODEL-mlflow for --format mlflow].",
        summary="The bundle folder [default: MODEL-bundle].",
    )
    format: Literal["bundle", "onnx", "int8", "mlflow"] = option(
        "bundle",
        "bundle: config.json (classes, preprocessing), the weights and a model card; onnx: the bundle "
        "plus model.onnx and its parity.json; int8: also model.int8.onnx and its accuracy and speed "
        "against fp32 (int8.json); mlflow: an MLflow pyfunc model holding the bundle, for "
        "mlflow.pyfunc.load_model and `mlflow models serve` (needs pip install 'foveal[mlflow]').",
        summary="bundle; onnx: also model.onnx; int8: also INT8; mlflow.",
    )
    maps: tuple[str, ...] = option(
        (),
        "ONNX: extra map outputs beside the pooling weights: rollout. Give it once per map.",
        summary="ONNX: extra map outputs: rollout.",
    )
    data: str | None = option(
        None,
        "ONNX: images to check parity (and INT8 accuracy) on, as for evaluate [default: the run's "
        "held-out ones].",
        summary="ONNX: images to check it on [default: held-out].",
    )
    parity_images: int = option(
        1000, "ONNX: at most this many images, evenly spaced.", summary="ONNX: at most this many images."
    )
    max_accuracy_drop: float = option(
        MAX_ACCURACY_DROP,
        "INT8: refuse it if it loses more top-1 points than this against fp32 ONNX.",
        summary="INT8: most top-1 points it may lose.",
    )
    force: bool = option(False, "INT8: keep it even if it loses more.", negatable=False)
    license: str = option(
        "other",
        "The model card's license, e.g. apache-2.0 or mit (a Hugging Face Hub license identifier).",
        summary="The model card's license: apache-2.0, mit...",
    )
    name: str | None = option(
        None,
        "The model's name on its card [default: the bundle folder's].",
        summary="The model's name on its card [default: the folder's].",
    )


@dataclass(frozen=True)
class BenchSettings:
    """How much `foveal bench` measures. Stored in every record; its options are these fields."""

    samples: int = option(
        200,  # p99 needs ~100+
        "Timed batch-1 runs per backend, model-only and end to end (p99 needs a hundred or more).",
        summary="Timed batch-1 runs per backend.",
    )
    warmup: int = option(
        20,  # allocator, caches, lazy initialisation; 2 batches at most
        "Untimed runs before them (allocator, caches, lazy initialisation); two batches at most.",
        summary="Untimed runs before them.",
    )
    batch_size: int = option(
        64,
        "The batch size of the throughput: a typical offline batch.",
        summary="The batch size of the throughput.",
    )
    batches: int = option(
        10, "Timed batches per backend; the throughput is their median.", summary="Timed batches per backend."
    )
    compile: bool = option(
        True,
        "Also time torch.compile, which takes tens of seconds to compile, even for a small model.",
        summary="Also time torch.compile (slow to compile).",
    )
    threads: int | None = option(
        None,
        "CPU threads of PyTorch and onnxruntime alike [default: PyTorch's].",
        summary="CPU threads of both runtimes [default: PyTorch's].",
    )

    def __post_init__(self) -> None:
        for name in ("samples", "batch_size", "batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}.")
